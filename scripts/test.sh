#!/usr/bin/env bash
# Installs what is needed, builds everything from scratch-or-incrementally in build/, and runs
# the whole test suite (GPU tests skip cleanly without a device).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DJZ_WERROR=ON
cmake --build build -j2
# The release preset too: -O2 finds warnings (treated as errors) that the default build does not.
cmake --preset release >/dev/null
cmake --build --preset release
# A persistent PoCL kernel cache makes OpenCL tests pay the compile once per machine.
export POCL_CACHE_DIR="${POCL_CACHE_DIR:-$PWD/build/pocl-cache}"
mkdir -p "$POCL_CACHE_DIR"
# In a subshell: the blocks below start from the repository root.
(cd build && ctest --output-on-failure -j2 "$@")

# --- Sanitizers (docs/testing.md, "Sanitizers") -------------------------------------------------
# The whole suite again under ASan + UBSan (build-asan): any report is fatal, and the integration
# harness fails a test whose daemon exits non-zero or whose logs (daemons', jobs') hold a report.
# Then the store's writer thread and the loop's completion path under TSan (build-tsan).
# JAZARI_SANITIZERS=0 skips this block (a quicker local run).
if [ "${JAZARI_SANITIZERS:-1}" != 0 ]; then
  cmake --preset asan >/dev/null
  cmake --build --preset asan
  (
    export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1"
    export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
    export LSAN_OPTIONS="suppressions=$PWD/tests/sanitizers/lsan.supp:print_suppressions=0"
    ctest --test-dir build-asan --output-on-failure -j2 "$@"
  )
  cmake --preset tsan >/dev/null
  cmake --build --preset tsan
  TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1" \
    ctest --test-dir build-tsan --output-on-failure -R '^test_store$'
fi
# --- end of sanitizers ---------------------------------------------------------------------------

# --- Fuzzing (docs/testing.md, "Fuzzing") --------------------------------------------------------
# Every libFuzzer target (build-fuzz: clang, ASan + UBSan) for a bounded time on its checked-in
# corpus; a crash, leak, timeout, out-of-memory or broken invariant fails the run and leaves the
# input in build-fuzz/fuzz-out/. JAZARI_FUZZ_SECONDS: seconds per target (default 10, 11 targets);
# JAZARI_FUZZ=0 skips this block.
if [ "${JAZARI_FUZZ:-1}" != 0 ]; then
  cmake --preset fuzz >/dev/null
  cmake --build --preset fuzz
  tests/fuzz/run.sh "${JAZARI_FUZZ_SECONDS:-10}"
fi
# --- end of fuzzing ------------------------------------------------------------------------------
