#!/usr/bin/env bash
# Everything that needs the GPU machine, in one go: build against its CUDA LibTorch, run the GPU
# tests and the Python tests on torch 2.x, compute-sanitizer, the GPU benchmark, the C++ engine on CUDA and
# the fairseq end-to-end benchmark. Results go to $OUT (the device tool brings them back).
# GPU_STEPS picks the steps after the build (default: all of "tests sanitize bench engine fairseq"), e.g.
# GPU_STEPS=fairseq for the build and the fairseq benchmark only.
set -uo pipefail
OUT="${OUT:-/tmp/decayfw-gpu}"; mkdir -p "$OUT"
cd "$(dirname "$0")/../.."
STEPS=" ${GPU_STEPS:-tests sanitize bench engine fairseq} "
want() { [[ "$STEPS" == *" $1 "* ]]; }
PY="$(command -v python || command -v python3)"
{ nvidia-smi; "$PY" -c "import torch, sys; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda)";
  command -v cmake ninja nvcc compute-sanitizer; "$PY" -m pip list 2>/dev/null | grep -i -E "torch|triton|flash|fla|pybind|ninja|cmake|pytest"; } > "$OUT/env.txt" 2>&1
export PYTHONPATH="$PWD/bindings/python"
# The extension: one made beforehand for this machine's torch, Python and sources (tests/gpu/prebuild.sh,
# carried as build-gpu-prebuilt/), else built here the same way, else with torch.utils.cpp_extension.
PREBUILT="${PREBUILT:-build-gpu-prebuilt}"
use_prebuilt() {
  [ -f "$PREBUILT/signature.txt" ] && [ -f "$PREBUILT/decayfw/libdecayfw_ops.so" ] || return 1
  local here; here="$("$PY" tests/gpu/build_signature.py 2>/dev/null)"
  [ "$here" = "$(cat "$PREBUILT/signature.txt")" ] || { echo "prebuilt is for $(cat "$PREBUILT/signature.txt"), this is $here"; return 1; }
  cp "$PREBUILT"/decayfw/*.so bindings/python/decayfw/ &&
    "$PY" -c "import decayfw, sys; sys.exit(0 if decayfw.HAS_EXTENSION and decayfw.BUILT_WITH_CUDA else 1)"
}
if use_prebuilt > "$OUT/build.txt" 2>&1; then
  echo "prebuilt ($(cat "$PREBUILT/signature.txt"))" >> "$OUT/build.txt"
elif command -v cmake >/dev/null && PY="$PY" TREE=build-gpu NATIVE=ON bash tests/gpu/prebuild.sh "$PREBUILT" > "$OUT/cmake.log" 2>&1 &&
    use_prebuilt >> "$OUT/build.txt" 2>&1; then
  echo "built with CMake" >> "$OUT/build.txt"
else
  echo "CMake build failed or missing; torch.utils.cpp_extension fallback" >> "$OUT/build.txt"
  rm -f bindings/python/decayfw/_C*.so bindings/python/decayfw/libdecayfw_ops.so  # no half-copied build
  mkdir -p build-gpu-ext
  "$PY" tests/gpu/build_with_torch.py build-gpu-ext > "$OUT/ext.log" 2>&1
  export DECAYFW_OPS_LIBRARY="$PWD/build-gpu-ext/decayfw_ops_ext.so"
fi
"$PY" -c "import decayfw; print('HAS_EXTENSION', decayfw.HAS_EXTENSION, 'CUDA', decayfw.BUILT_WITH_CUDA)" >> "$OUT/build.txt" 2>&1
if want tests; then
  "$PY" -m pytest -q -p no:cacheprovider tests/gpu tests/python > "$OUT/pytest.txt" 2>&1
  echo "pytest rc=$?" >> "$OUT/pytest.txt"
fi
if want sanitize && command -v compute-sanitizer >/dev/null; then
  compute-sanitizer --tool memcheck "$PY" tests/gpu/sanitize_small.py > "$OUT/memcheck.txt" 2>&1
  compute-sanitizer --tool racecheck "$PY" tests/gpu/sanitize_small.py > "$OUT/racecheck.txt" 2>&1
fi
if want bench; then
  # fla's fused_recurrent_gla for the `fla` column: from a carried wheelhouse/fla (benchmarks/prepare_fla_wheelhouse.sh)
  fla_pp=""
  if [ -d wheelhouse/fla ] && ! "$PY" -c "import fla" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --target build-fla wheelhouse/fla/*.whl > "$OUT/fla_install.txt" 2>&1 &&
      fla_pp="$PWD/build-fla:"
  fi
  PYTHONPATH="$fla_pp$PYTHONPATH" timeout "${BENCH_TIMEOUT:-300}" "$PY" benchmarks/bench_gpu.py ${BENCH_ARGS:-} --json "$OUT/bench_gpu.json" > "$OUT/bench_gpu.md" 2> "$OUT/bench_gpu.err"
  echo "bench rc=$?" >> "$OUT/bench_gpu.err"
fi
# The C++ engine and the decayfw CLI on CUDA (issue 8, deliverable 3): the prebuilt binaries in
# $PREBUILT/engine (tests/gpu/prebuild.sh), else built here; results in engine-*.txt.
if want engine; then
  PREBUILT="$PREBUILT" OUT="$OUT" timeout "${ENGINE_TIMEOUT:-240}" bash tests/gpu/run_engine_cuda.sh > "$OUT/engine.txt" 2>&1
  echo "engine rc=$?" >> "$OUT/engine.txt"
fi
# fairseq end to end (issue 8): training tokens/s of decay_transformer_lm_wiki103 vs transformer_lm_wiki103 at
# --tokens-per-sample 512 and 3072, and generation tokens/s at context 3072, through fairseq's Trainer and
# SequenceGenerator. The GPU machine has no fairseq and no network: fairseq is installed from wheelhouse/fairseq
# (made beforehand by benchmarks/prepare_fairseq_wheelhouse.sh where PyPI is reachable, and carried here) into
# build-fairseq/, unless it imports already. FAIRSEQ_TIMEOUT (default 240 s) bounds install + benchmark;
# FAIRSEQ_BENCH_ARGS passes sizes and steps (e.g. "--steps 5 --gen-tokens 32").
if want fairseq; then
  fsq_end=$((SECONDS + ${FAIRSEQ_TIMEOUT:-240}))
  fsq_pp=""
  rm -f build-fairseq/pythonpath
  if [ -d wheelhouse/fairseq ]; then
    PY="$PY" timeout "${FAIRSEQ_INSTALL_TIMEOUT:-120}" bash benchmarks/install_fairseq_offline.sh wheelhouse/fairseq build-fairseq \
      > "$OUT/fairseq_install.txt" 2>&1
    echo "install rc=$?" >> "$OUT/fairseq_install.txt"
    [ -f build-fairseq/pythonpath ] && fsq_pp="$(cat build-fairseq/pythonpath):"
  else
    echo "no wheelhouse/fairseq (see benchmarks/prepare_fairseq_wheelhouse.sh); trying an installed fairseq" > "$OUT/fairseq_install.txt"
  fi
  fsq_left=$((fsq_end - SECONDS)); [ "$fsq_left" -lt 30 ] && fsq_left=30
  fsq_budget=$((fsq_left > 90 ? fsq_left - 45 : fsq_left / 2))  # start no configuration after this
  PYTHONPATH="$fsq_pp$PYTHONPATH:$PWD/plugin" timeout -k 10 "$fsq_left" "$PY" benchmarks/bench_fairseq_gpu.py \
    --time-budget "$fsq_budget" ${FAIRSEQ_BENCH_ARGS:-} --json "$OUT/bench_fairseq.json" --md "$OUT/bench_fairseq.md" \
    > "$OUT/bench_fairseq.out" 2> "$OUT/bench_fairseq.err"
  echo "bench_fairseq rc=$? ($((fsq_end - SECONDS)) s of FAIRSEQ_TIMEOUT left)" >> "$OUT/bench_fairseq.err"
fi
