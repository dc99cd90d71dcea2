#!/usr/bin/env bash
# Builds, on a machine without a GPU, the decayfw extension for the GPU machine's Python and torch, so that a
# GPU session spends its minutes on tests and benchmarks rather than on nvcc (the chunk kernels take about a
# minute to compile there). Needs a Python with the GPU machine's torch (pip's torch==2.11.0, CUDA 13.0, for
# Python 3.12: `python3.12 -m venv V && V/bin/pip install torch==2.11.0 cmake ninja pybind11`), nvcc 13.
#
#   PY=V/bin/python tests/gpu/prebuild.sh [OUT]          # default OUT: build-gpu-prebuilt (git-ignored)
#
# OUT/decayfw/ holds _C and libdecayfw_ops (sm_90), OUT/signature.txt the torch, Python and sources they were built for.
# Carry OUT to the GPU machine (run(carry=["build-gpu-prebuilt"])); tests/gpu/run_all.sh copies them into the
# package when that machine's torch and Python are the same, and builds there otherwise.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT="${1:-build-gpu-prebuilt}"
PY="${PY:?set PY to a Python with the torch of the GPU machine (see the top of this script)}"
TREE="${TREE:-build-gpu-tree}"
"$PY" -c "import torch; assert torch.version.cuda, 'this torch has no CUDA'" || {
  echo "prebuild: $PY's torch is not a CUDA build" >&2; exit 1; }
TP="$("$PY" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')"
BIN="$(dirname "$PY")"  # the venv's cmake and ninja, when it has them
export PATH="$BIN:/usr/local/cuda/bin:$PATH"
rm -rf "$OUT"; mkdir -p "$OUT/decayfw"
cmake -S . -B "$TREE" -G Ninja -DCMAKE_PREFIX_PATH="$TP" -DDECAYFW_PYTHON="$PY" -DDECAYFW_CUDA=ON \
  -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90}" -DDECAYFW_NATIVE=OFF -DDECAYFW_BUILD_ANALYZER=OFF -DDECAYFW_BUILD_GUI=OFF \
  -DDECAYFW_BUILD_TESTS=OFF -DDECAYFW_BUILD_BENCHMARKS=OFF -DDECAYFW_PY_PACKAGE_DIR="$PWD/$OUT/decayfw" >/dev/null
cmake --build "$TREE" -j "$(nproc)"
"$PY" tests/gpu/build_signature.py > "$OUT/signature.txt"
echo "prebuilt for $(cat "$OUT/signature.txt") in $OUT:"; ls -l "$OUT/decayfw"
