#!/usr/bin/env bash
# Downloads, where PyPI is reachable, flash-linear-attention's kernels (fla-core, pure Python + Triton) and
# einops into the git-ignored wheelhouse/fla (1.1 MB), for benchmarks/bench_gpu.py's `fla` column on the GPU
# machine, which has Triton but no network. tests/gpu/run_all.sh installs them from there into build-fla/
# (nothing goes into that machine's environment). Carry the folder: run(carry=["wheelhouse"]).
# fla-core 0.6.0 was checked to import with torch 2.11 + Triton 3.6; its fused_recurrent_gla(q, k, v, gk, gv)
# is checked against decayfw by bench_gpu.py itself before it is timed.
set -euo pipefail
cd "$(dirname "$0")/.."
WH="${1:-wheelhouse/fla}"
PY="${PY:-$(command -v python3)}"
mkdir -p "$WH"
"$PY" -m pip --disable-pip-version-check -q download --no-deps -d "$WH" "fla-core==0.6.0" "einops==0.8.1"
ls -l "$WH"
