#!/usr/bin/env bash
# Installs what is needed, builds everything from scratch-or-incrementally in build/, and runs
# the whole test suite (GPU tests skip cleanly without a device).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
cmake --build build -j2
# The release preset too: -O2 finds warnings (treated as errors) that the default build does not.
cmake --preset release >/dev/null
cmake --build --preset release
# A persistent PoCL kernel cache makes OpenCL tests pay the compile once per machine.
export POCL_CACHE_DIR="${POCL_CACHE_DIR:-$PWD/build/pocl-cache}"
mkdir -p "$POCL_CACHE_DIR"
cd build
ctest --output-on-failure -j2 "$@"
