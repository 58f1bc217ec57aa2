#!/usr/bin/env bash
# Runs every fuzz target of build-fuzz/ for a bounded time on its corpus and fails on the first
# crash, leak, timeout or out-of-memory (docs/testing.md, "Fuzzing").
#   tests/fuzz/run.sh [SECONDS_PER_TARGET [TARGET...]]     (default: 10 seconds, all targets)
# New inputs found go to a scratch folder, not into the checked-in corpus; a failing input is
# left in $JZ_FUZZ_OUT (default build-fuzz/fuzz-out) as crash-*, leak-*, timeout-* or oom-*.
set -euo pipefail
cd "$(dirname "$0")/../.."
secs=${1:-10}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(job_request params model idx csv cpulist duration spec
                                     event_line proto topo)
out=${JZ_FUZZ_OUT:-$PWD/build-fuzz/fuzz-out}
mkdir -p "$out"
failed=()
for t in "${targets[@]}"; do
  bin=build-fuzz/fuzz/fuzz_$t
  [ -x "$bin" ] || { echo "fuzz: $bin is missing: cmake --build --preset fuzz" >&2; exit 2; }
  scratch=$(mktemp -d)
  # Topologies are large documents and hwloc's import is slow: let mutations grow to 64 KiB.
  extra=()
  [ "$t" = topo ] && extra=(-max_len=65536)
  # -timeout: one input may take at most 10 s; -rss_limit_mb also caps a single allocation.
  if "$bin" -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
       -artifact_prefix="$out/$t-" "${extra[@]}" "$scratch" "tests/fuzz/corpus/$t" \
       > "$out/$t.log" 2>&1; then
    echo "fuzz: $t: $(grep -E '^stat::number_of_executed_units' "$out/$t.log" | awk '{print $2}') runs in ${secs}s, no failure"
  else
    echo "fuzz: $t FAILED; the input is in $out ($t-*), the report in $out/$t.log" >&2
    grep -E 'ERROR|SUMMARY|invariant' "$out/$t.log" | head -5 >&2 || true
    failed+=("$t")
  fi
  rm -rf "$scratch"
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
