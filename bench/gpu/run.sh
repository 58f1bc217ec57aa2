#!/bin/bash
# The GPU check, as one prepared script for a machine with an NVIDIA GPU (docs/kernels.md, "On
# a GPU"). It prints every figure: the card, the GPU tests, the compute layer against cuBLAS
# called directly and against the device's own copy bandwidth (targets: ratio >= 0.95), and one
# training run of the train plugin on the GPU. Under ten minutes on an H100/H200 class card.
#
# Usage: bench/gpu/run.sh [BUILD_DIR]   (default build-release)
# BUILD_DIR must hold a build with CUDA (nvcc found at configure time): build it where the
# toolkit is, e.g. `cmake --preset release && cmake --build build-release -j2`, and bring it
# along. Exits 77 (skipped) where there is no GPU.
set -u
BUILD=${1:-build-release}
HERE=$(cd "$(dirname "$0")/../.." && pwd)
cd "$HERE"
section() { printf '\n== %s\n' "$*"; }

if ! command -v nvidia-smi >/dev/null || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "bench/gpu/run.sh: no NVIDIA GPU or driver here: nothing to measure" >&2
    exit 77
fi
if [ ! -e "$BUILD/lib/libjz_kernels_cuda.so" ]; then
    echo "bench/gpu/run.sh: $BUILD has no CUDA backend (libjz_kernels_cuda.so); build it where nvcc is" >&2
    exit 2
fi

section "card"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader

section "GPU tests (label gpu)"
if command -v ctest >/dev/null; then
    timeout 180 ctest --test-dir "$BUILD" -L gpu --output-on-failure
else
    # No CMake on the machine: run the GPU tests' executables themselves.
    for t in $(find "$BUILD" -maxdepth 2 -type f -name 'kernels_ops_cuda' -perm -u+x); do
        timeout 180 "$t" && echo "PASS $t" || echo "FAIL $t (exit $?)"
    done
fi

section "compute layer on the GPU: SGEMM vs cuBLAS, stencils vs the device's copy bandwidth"
# One JSON object per line; "ratio" is ours over the reference measured in the same run.
timeout 240 "$BUILD/bin/jazari-bench-kernels" --backends cuda --ops sgemm,stencil,nbody,act --reps 5

section "train plugin on the GPU (Fashion-MNIST MLP, 5 epochs)"
DATA=/usr/share/datasets/fashion-mnist
if [ -d "$DATA" ]; then
    WORK=$(mktemp -d)
    start=$(date +%s%N)
    timeout 180 "$BUILD/bin/jazari-bench-train" train "$WORK" backend=cuda devices=1 \
        dataset="$DATA" epochs=5 > "$WORK/out.json"
    end=$(date +%s%N)
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(json.dumps({"rc": d["rc"], "error": d["error"], "metrics": d["metrics"]}, sort_keys=True))' "$WORK/out.json"
    echo "wall $(( (end - start) / 1000000 )) ms for 5 epochs (start-up and data loading included)"
    rm -rf "$WORK"
else
    echo "no $DATA here (Debian's dataset-fashion-mnist): training skipped"
fi
