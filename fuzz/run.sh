#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 300) each, from the corpora in
# fuzz/corpus/, with the nightly toolchain (cargo fuzz needs it). Not part of CI.
#
#   cargo install cargo-fuzz --locked   # once
#   fuzz/run.sh                          # all targets, 5 minutes each
#   SECONDS_EACH=60 fuzz/run.sh resume   # one target, one minute
set -euo pipefail
cd "$(dirname "$0")"
seconds="${SECONDS_EACH:-300}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(resume stored tool_args openai)
for t in "${targets[@]}"; do
  echo "==> $t ($seconds s)"
  mkdir -p "corpus/$t"
  cargo +nightly fuzz run -O "$t" "corpus/$t" -- -max_total_time="$seconds" -rss_limit_mb=2048
done
