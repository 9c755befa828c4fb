#!/usr/bin/env bash
# The HTTP benchmark: one HITL cycle (create a thread, run to the interrupt, resume
# with an approval) driven by the official Python SDK (bench.py) against hitl-server
# (examples/server.rs, graph `approve`, SQLite file, release build) and against the
# reference, `langgraph dev` (langgraph-cli[inmem], graph.py), side by side,
# alternating which goes first, ROUNDS times. Results: bench/results/http-<date>.jsonl
# and the HTTP section of BENCHMARKS.md (bench/http/report.py).
#
# Needs: this repository's toolchain, python3 with venv, network access to PyPI the
# first time. Sizes: ROUNDS (default 3), LATENCY_CYCLES (50), CYCLES (200 per level).
set -euo pipefail
cd "$(dirname "$0")/../.."

ROUNDS=${ROUNDS:-3}
LATENCY_CYCLES=${LATENCY_CYCLES:-50}
CYCLES=${CYCLES:-200}
HITL_PORT=${HITL_PORT:-2451}
LG_PORT=${LG_PORT:-2452}

venv=bench/http/.venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install -q -r bench/http/requirements.txt

echo "==> building the example server (release)" >&2
cargo build --release -q -p hitl-examples --example server

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

target/release/examples/server --port "$HITL_PORT" --db "$work/hitl.db" >"$work/hitl.log" 2>&1 &
pids+=($!)
(cd bench/http && exec "../../$venv/bin/langgraph" dev --no-browser --no-reload --port "$LG_PORT" --config langgraph.json) \
  >"$work/langgraph.log" 2>&1 &
pids+=($!)
for port in "$HITL_PORT" "$LG_PORT"; do
  for _ in $(seq 1 120); do
    curl -sf -o /dev/null "http://127.0.0.1:$port/ok" && break
    sleep 0.5
  done
done

out="bench/results/http-$(date +%Y%m%d-%H%M%S).jsonl"
mkdir -p bench/results
one() {
  "$venv/bin/python" bench/http/bench.py --url "http://127.0.0.1:$2" --system "$1" \
    --latency-cycles "$LATENCY_CYCLES" --cycles "$CYCLES" --concurrency 20 100 | tee -a "$out"
}
for round in $(seq 1 "$ROUNDS"); do
  echo "==> round $round of $ROUNDS" >&2
  if (( round % 2 )); then
    one hitl-server "$HITL_PORT"; one langgraph-dev "$LG_PORT"
  else
    one langgraph-dev "$LG_PORT"; one hitl-server "$HITL_PORT"
  fi
done

"$venv/bin/python" bench/http/report.py "$out" BENCHMARKS.md
