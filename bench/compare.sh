#!/usr/bin/env bash
# Runs hitl and LangGraph side by side on the scenarios of bench/SCENARIOS.md,
# alternating, ROUNDS times, and writes BENCHMARKS.md and bench/long-thread.svg.
#
# Needs: this repository's toolchain, python3 (3.11) with venv, PostgreSQL at PG_URL.
# Sizes can be overridden: ROUNDS, N (cycle), CYCLES (long), THREADS (paused),
# WTHREADS (workers).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
N=${N:-1000}
CYCLES=${CYCLES:-200}
THREADS=${THREADS:-10000}
WTHREADS=${WTHREADS:-2000}
PG_URL=${PG_URL:-postgres://postgres@127.0.0.1:5432/test}

out="bench/results/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
results="$out/results.jsonl"

echo "==> building hitl-bench (release)" >&2
cargo build --release -q -p hitl-bench
hitl=(target/release/hitl-bench)

echo "==> installing LangGraph into bench/.venv" >&2
[ -x bench/.venv/bin/python ] || python3 -m venv bench/.venv
bench/.venv/bin/pip install -q -r bench/langgraph/requirements.txt
lg=(bench/.venv/bin/python bench/langgraph/bench.py)

run() {
  echo "    $*" >&2
  "$@" | tee -a "$results" >/dev/null
}

# Runs one scenario for both systems; which one goes first alternates by round.
both() {
  local round=$1; shift
  if (( round % 2 )); then
    run "${hitl[@]}" "$@"; run "${lg[@]}" "$@"
  else
    run "${lg[@]}" "$@"; run "${hitl[@]}" "$@"
  fi
}

for round in $(seq 1 "$ROUNDS"); do
  echo "==> round $round of $ROUNDS" >&2
  for backend in memory sqlite postgres; do
    both "$round" cycle --backend "$backend" --n "$N" --pg-url "$PG_URL"
  done
  # hitl's other durability settings (LangGraph's are fixed: see BENCHMARKS.md).
  run "${hitl[@]}" cycle --backend sqlite --sqlite-durability normal --n "$N"
  run "${hitl[@]}" cycle --backend sqlite --sqlite-durability full --n "$N"
  run "${hitl[@]}" cycle --backend postgres --pg-durability every-write --n "$N" --pg-url "$PG_URL"
  for backend in memory sqlite postgres; do
    both "$round" long --backend "$backend" --cycles "$CYCLES" --pg-url "$PG_URL"
  done
  both "$round" paused --threads "$THREADS"
  for workers in 1 2; do
    both "$round" workers --backend postgres --threads "$WTHREADS" --workers "$workers" --pg-url "$PG_URL"
  done
done

machine="Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), \
$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); $(rustc --version); \
$(bench/.venv/bin/python --version); PostgreSQL $(psql "$PG_URL" -Atc 'show server_version' 2>/dev/null || echo '?'). \
Rounds: $ROUNDS; cycle n = $N, long cycles = $CYCLES, paused threads = $THREADS, worker threads = $WTHREADS."

bench/.venv/bin/python bench/report.py "$results" BENCHMARKS.md bench/long-thread.svg --machine "$machine"
cat BENCHMARKS.md
