#!/usr/bin/env bash
# Builds the C++ engine's device and model tests and the decayfw CLI against PY's CUDA torch in TREE
# (no Python extension, no Qt). Used by tests/gpu/prebuild.sh (here, ahead of a GPU session) and by
# tests/gpu/run_engine_cuda.sh (on the GPU machine, when no matching prebuilt engine was carried).
#   PY=V/bin/python tests/gpu/build_engine.sh TREE      # CUDA_ARCHS (default 90), NATIVE (default ON, as in
#   CMakeLists.txt: right on the machine that runs the build; prebuild.sh sets OFF for a build carried elsewhere)
set -euo pipefail
cd "$(dirname "$0")/../.."
TREE="${1:?usage: build_engine.sh TREE}"
PY="${PY:?set PY to a Python with a CUDA torch}"
cmake -S . -B "$TREE" $(command -v ninja >/dev/null && echo -G Ninja) -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$("$PY" -c 'import torch.utils; print(torch.utils.cmake_prefix_path)')" \
  -DDECAYFW_PYTHON="$PY" -DDECAYFW_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="${CUDA_ARCHS:-90}" -DDECAYFW_NATIVE="${NATIVE:-ON}" \
  -DDECAYFW_BUILD_PYTHON=OFF -DDECAYFW_BUILD_GUI=OFF -DDECAYFW_BUILD_BENCHMARKS=OFF -DDECAYFW_BUILD_TESTS=ON >/dev/null
cmake --build "$TREE" -j "$(nproc)" --target test_engine_device test_engine_model decayfw_cli
