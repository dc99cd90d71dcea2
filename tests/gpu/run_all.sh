#!/usr/bin/env bash
# Everything that needs the GPU machine, in one go: build against its CUDA LibTorch, run the GPU
# tests and the Python tests on torch 2.x, compute-sanitizer, the GPU benchmark, the C++ engine on CUDA and
# the fairseq end-to-end benchmark, then Nsight Compute on the chunk kernels. GPU_STEPS picks the steps
# after the build (default: all of "tests sanitize bench engine fairseq profile", run in that order, of
# importance), e.g. GPU_STEPS=fairseq for the build and the fairseq benchmark only.
#
# Time. The device tool's calls run at most 10 minutes and a session has 15 minutes of device time, so
# the script keeps a deadline: GPU_DEADLINE seconds after it starts (default 570, for a 600 s call), it
# has ended. Each step runs under `timeout` with its own limit (TESTS_TIMEOUT 150, MEMCHECK_TIMEOUT 60,
# RACECHECK_TIMEOUT 90, BENCH_TIMEOUT 200, ENGINE_TIMEOUT 50, FAIRSEQ_TIMEOUT 150, PROFILE_TIMEOUT 90 s), cut to what the
# deadline leaves after STEP_RESERVE seconds (default 30) for each wanted step still to come; a step with
# under STEP_RESERVE seconds left is skipped and says so. The benchmarks get time budgets inside their
# limits, so they stop starting new sizes and still print their tables.
#
# Results. The device tool brings back at most 8 files from $OUT, so the logs go to a folder of their
# own (GPU_LOGS, default a fresh one in /tmp) and, after every step, tests/gpu/publish_results.py packs
# them into $OUT: summary.txt (steps, exit codes, times, and each log's telling lines), results.tar.gz
# (every log) and the benchmark tables. A call stopped at its limit still returns what the finished
# steps wrote.
set -uo pipefail
OUT="${OUT:-/tmp/decayfw-gpu}"; mkdir -p "$OUT"
LOGS="${GPU_LOGS:-$(mktemp -d /tmp/decayfw-gpu-logs.XXXXXX)}"; mkdir -p "$LOGS"
cd "$(dirname "$0")/../.."
STEPS=" ${GPU_STEPS:-tests sanitize bench engine fairseq profile} "
want() { [[ "$STEPS" == *" $1 "* ]]; }
PY="${PY:-$(command -v python || command -v python3)}"
export PYTHONUNBUFFERED=1  # a step stopped by its timeout keeps what it printed
DEADLINE=$((SECONDS + ${GPU_DEADLINE:-570}))
RESERVE="${STEP_RESERVE:-30}"
WHEELHOUSE="${WHEELHOUSE:-wheelhouse}"  # carried wheels: fla for the benchmark, fairseq for the end-to-end one
publish() { "$PY" tests/gpu/publish_results.py "$LOGS" "$OUT" 2>> "$LOGS/publish.err" || true; }
trap publish EXIT
# The steps after the build in the order they run, of importance, each as STEP:WORD, WORD being what
# GPU_STEPS names it by.
ORDER=(tests:tests memcheck:sanitize racecheck:sanitize bench:bench engine:engine fairseq:fairseq profile:profile)
# limit STEP DEFAULT: seconds STEP may run: its default, cut so that each wanted step after it in ORDER
# keeps RESERVE seconds before the deadline, but never below RESERVE itself (earlier steps matter more);
# 0 (skip it) when not even RESERVE seconds are left.
limit() {
  local name="$1" want_s="$2" later=0 after=0 e
  for e in "${ORDER[@]}"; do
    [ "$after" = 1 ] && want "${e#*:}" && later=$((later + RESERVE))
    [ "${e%%:*}" = "$name" ] && after=1
  done
  local avail=$((DEADLINE - SECONDS))
  local cap=$((avail - later))
  [ "$cap" -lt "$RESERVE" ] && cap=$RESERVE
  [ "$cap" -gt "$avail" ] && cap=$avail
  [ "$want_s" -gt "$cap" ] && want_s=$cap
  if [ "$want_s" -lt "$RESERVE" ]; then
    echo "$name skipped: $avail s left before the deadline" >> "$LOGS/steps.txt"
    echo 0
  else
    echo "$want_s"
  fi
}
# record STEP RC START [LIMIT]: the step's line in the ledger, then the logs published.
record() {
  local note=""
  [ "$#" -gt 3 ] && note=" (limit $4 s)"
  [ "$2" -eq 124 ] || [ "$2" -eq 137 ] && note=" (limit $4 s, stopped at it)"
  echo "$1 rc=$2 $((SECONDS - $3)) s$note" >> "$LOGS/steps.txt"
  publish
}
{ date -u; nvidia-smi; "$PY" -c "import torch, sys; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda)";
  command -v cmake ninja nvcc compute-sanitizer; "$PY" -m pip list 2>/dev/null | grep -i -E "torch|triton|flash|fla|pybind|ninja|cmake|pytest"; } > "$LOGS/env.txt" 2>&1
export PYTHONPATH="$PWD/bindings/python"
# The extension: one made beforehand for this machine's torch, Python and sources (tests/gpu/prebuild.sh,
# carried as build-gpu-prebuilt/), else built here the same way, else with torch.utils.cpp_extension.
# GPU_BUILD=none takes the decayfw importable as it is (a rerun on a warm machine, where the first call's
# copy is still in place). The extension is copied into bindings/python/decayfw/, where the tests import it:
# a rehearsal on a development machine replaces the local build's libdecayfw_ops.so there (delete it and run
# `cmake --build build` to get the local one back).
PREBUILT="${PREBUILT:-build-gpu-prebuilt}"
use_prebuilt() {
  [ -f "$PREBUILT/signature.txt" ] && [ -f "$PREBUILT/decayfw/libdecayfw_ops.so" ] || return 1
  local here; here="$("$PY" tests/gpu/build_signature.py 2>/dev/null)"
  [ "$here" = "$(cat "$PREBUILT/signature.txt")" ] || { echo "prebuilt is for $(cat "$PREBUILT/signature.txt"), this is $here"; return 1; }
  cp "$PREBUILT"/decayfw/*.so bindings/python/decayfw/ &&
    "$PY" -c "import decayfw, sys; sys.exit(0 if decayfw.HAS_EXTENSION and decayfw.BUILT_WITH_CUDA else 1)"
}
# cuda_tool SOURCE LOG: one of the standalone CUDA programs (no LibTorch) run for at most 30 s, its output and
# exit code appended to LOG: prebuilt by prebuild.sh into $PREBUILT, else compiled here.
cuda_tool() {
  local name; name="$(basename "$1" .cu)"
  local tool="$PREBUILT/$name"
  if [ ! -x "$tool" ]; then
    tool="build-gpu-tools/$name"; mkdir -p build-gpu-tools
    nvcc -O3 -std=c++17 -arch=sm_90 -Ikernels/cuda -Ikernels/include "$1" -o "$tool" > "$2" 2>&1
  fi
  timeout -k 5 30 "$tool" >> "$2" 2>&1
  echo "$name rc=$?" >> "$2"
}
t0=$SECONDS
if [ "${GPU_BUILD:-auto}" = none ]; then
  echo "GPU_BUILD=none: the decayfw importable from bindings/python as it is" > "$LOGS/build.txt"
elif use_prebuilt > "$LOGS/build.txt" 2>&1; then
  echo "prebuilt ($(cat "$PREBUILT/signature.txt"))" >> "$LOGS/build.txt"
elif command -v cmake >/dev/null && PY="$PY" TREE=build-gpu NATIVE=ON LINEINFO=ON bash tests/gpu/prebuild.sh "$PREBUILT" > "$LOGS/cmake.log" 2>&1 &&
    use_prebuilt >> "$LOGS/build.txt" 2>&1; then
  echo "built with CMake" >> "$LOGS/build.txt"
else
  echo "CMake build failed or missing; torch.utils.cpp_extension fallback" >> "$LOGS/build.txt"
  rm -f bindings/python/decayfw/_C*.so bindings/python/decayfw/libdecayfw_ops.so  # no half-copied build
  mkdir -p build-gpu-ext
  "$PY" tests/gpu/build_with_torch.py build-gpu-ext > "$LOGS/ext.log" 2>&1
  export DECAYFW_OPS_LIBRARY="$PWD/build-gpu-ext/decayfw_ops_ext.so"
fi
"$PY" -c "import decayfw; print('HAS_EXTENSION', decayfw.HAS_EXTENSION, 'CUDA', decayfw.BUILT_WITH_CUDA)" >> "$LOGS/build.txt" 2>&1
record build $? "$t0"
if want tests && lim=$(limit tests "${TESTS_TIMEOUT:-150}") && [ "$lim" -gt 0 ]; then
  t0=$SECONDS
  # First, in a second, each operation of the chunk programs' CUDA executor against the host executor's
  # (tests/gpu/cta_executor_check.cu; prebuilt by prebuild.sh, else compiled here): a chunk-path failure
  # below is then either a named operation or a program.
  cuda_tool tests/gpu/cta_executor_check.cu "$LOGS/cta_executor.md"
  timeout -k 10 "$((lim - SECONDS + t0))" "$PY" -m pytest -q -rfE -p no:cacheprovider tests/gpu tests/python \
    > "$LOGS/pytest.txt" 2>&1
  record tests $? "$t0" "$lim"
fi
if want sanitize && command -v compute-sanitizer >/dev/null; then
  if lim=$(limit memcheck "${MEMCHECK_TIMEOUT:-60}") && [ "$lim" -gt 0 ]; then
    t0=$SECONDS
    timeout -k 10 "$lim" compute-sanitizer --tool memcheck "$PY" tests/gpu/sanitize_small.py > "$LOGS/memcheck.txt" 2>&1
    record memcheck $? "$t0" "$lim"
  fi
  if lim=$(limit racecheck "${RACECHECK_TIMEOUT:-90}") && [ "$lim" -gt 0 ]; then
    t0=$SECONDS
    timeout -k 10 "$lim" compute-sanitizer --tool racecheck "$PY" tests/gpu/sanitize_small.py > "$LOGS/racecheck.txt" 2>&1
    record racecheck $? "$t0" "$lim"
  fi
elif want sanitize; then
  echo "sanitize skipped: no compute-sanitizer on this machine" >> "$LOGS/steps.txt"
fi
if want bench && lim=$(limit bench "${BENCH_TIMEOUT:-200}") && [ "$lim" -gt 0 ]; then
  t0=$SECONDS
  # First, in about a second, the shared-memory bank model's assumptions timed one pattern at a time
  # (benchmarks/smem_patterns.cu; prebuilt by prebuild.sh, else compiled here).
  cuda_tool benchmarks/smem_patterns.cu "$LOGS/smem_patterns.md"
  # fla's fused_recurrent_gla for the `fla` column: from a carried wheelhouse/fla (benchmarks/prepare_fla_wheelhouse.sh)
  fla_pp=""
  if [ -d "$WHEELHOUSE/fla" ] && ! "$PY" -c "import fla" 2>/dev/null; then
    "$PY" -m pip install -q --no-index --no-deps --target build-fla "$WHEELHOUSE"/fla/*.whl > "$LOGS/fla_install.txt" 2>&1 &&
      fla_pp="$PWD/build-fla:"
  fi
  # The sweep starts no size after its budget, leaving time for the tables and the largest size.
  budget=$((lim - SECONDS + t0 - 45)); [ "$budget" -lt 10 ] && budget=10
  PYTHONPATH="$fla_pp$PYTHONPATH" timeout -k 10 "$((lim - SECONDS + t0))" "$PY" benchmarks/bench_gpu.py --time-budget "$budget" \
    ${BENCH_ARGS:-} --json "$LOGS/bench_gpu.json" > "$LOGS/bench_gpu.md" 2> "$LOGS/bench_gpu.err"
  record bench $? "$t0" "$lim"
fi
# The C++ engine and the decayfw CLI on CUDA (issue 8, deliverable 3): the prebuilt binaries in
# $PREBUILT/engine (tests/gpu/prebuild.sh), else built here; results in engine-*.txt.
if want engine && lim=$(limit engine "${ENGINE_TIMEOUT:-50}") && [ "$lim" -gt 0 ]; then
  t0=$SECONDS
  PY="$PY" PREBUILT="$PREBUILT" OUT="$LOGS" timeout -k 10 "$lim" bash tests/gpu/run_engine_cuda.sh > "$LOGS/engine.txt" 2>&1
  record engine $? "$t0" "$lim"
fi
# fairseq end to end (issue 8): training tokens/s of decay_transformer_lm_wiki103 vs transformer_lm_wiki103 at
# --tokens-per-sample 512 and 3072, and generation tokens/s at context 3072, through fairseq's Trainer and
# SequenceGenerator. The GPU machine has no fairseq and no network: fairseq is installed from wheelhouse/fairseq
# (made beforehand by benchmarks/prepare_fairseq_wheelhouse.sh where PyPI is reachable, and carried here) into
# build-fairseq/, unless it imports already. The step's limit (FAIRSEQ_TIMEOUT) bounds install + benchmark;
# FAIRSEQ_BENCH_ARGS passes sizes and steps (e.g. "--steps 5 --gen-tokens 32").
if want fairseq && lim=$(limit fairseq "${FAIRSEQ_TIMEOUT:-150}") && [ "$lim" -gt 0 ]; then
  t0=$SECONDS
  fsq_end=$((SECONDS + lim))
  fsq_pp=""
  rm -f build-fairseq/pythonpath
  if [ -d "$WHEELHOUSE/fairseq" ]; then
    install_s="${FAIRSEQ_INSTALL_TIMEOUT:-120}"; [ "$install_s" -gt $((lim / 2)) ] && install_s=$((lim / 2))
    PY="$PY" timeout -k 5 "$install_s" bash benchmarks/install_fairseq_offline.sh "$WHEELHOUSE/fairseq" build-fairseq \
      > "$LOGS/fairseq_install.txt" 2>&1
    echo "install rc=$?" >> "$LOGS/fairseq_install.txt"
    [ -f build-fairseq/pythonpath ] && fsq_pp="$(cat build-fairseq/pythonpath):"
  else
    echo "no $WHEELHOUSE/fairseq (see benchmarks/prepare_fairseq_wheelhouse.sh); trying an installed fairseq" > "$LOGS/fairseq_install.txt"
  fi
  fsq_left=$((fsq_end - SECONDS)); [ "$fsq_left" -lt 30 ] && fsq_left=30
  fsq_budget=$((fsq_left > 90 ? fsq_left - 45 : fsq_left / 2))  # start no configuration after this
  PYTHONPATH="$fsq_pp$PYTHONPATH:$PWD/plugin" timeout -k 10 "$fsq_left" "$PY" benchmarks/bench_fairseq_gpu.py \
    --time-budget "$fsq_budget" ${FAIRSEQ_BENCH_ARGS:-} --json "$LOGS/bench_fairseq.json" --md "$LOGS/bench_fairseq.md" \
    > "$LOGS/bench_fairseq.out" 2> "$LOGS/bench_fairseq.err"
  record fairseq $? "$t0" "$lim"
fi
# Nsight Compute on each chunk kernel once per forward form (tests/gpu/profile_chunk.py): occupancy, DRAM
# throughput, warp stall reasons, and shared memory's wavefronts and bank conflicts (MemoryWorkloadAnalysis_Tables;
# smem_model.md sets them beside bench_gpu.py's SMEM_WAVEFRONTS model), for the next optimisation. ncu reads
# hardware counters only where the machine's virtualisation allows it; elsewhere the step fails at once and its
# log says why.
NCU="$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | tail -1)"
if want profile && [ -n "$NCU" ] && lim=$(limit profile "${PROFILE_TIMEOUT:-90}") && [ "$lim" -gt 0 ]; then
  t0=$SECONDS
  # First the few counters that test the shared-memory model (one replay pass or two per kernel), a table of
  # measured against modeled wavefronts (tests/gpu/smem_model_check.py); then the full sections.
  # (the optional ones, the MUFU count's, only where this ncu lists them: an unknown name fails the whole run)
  smem_metrics="$(timeout -k 5 30 "$NCU" --query-metrics 2>/dev/null | "$PY" -c 'import sys; sys.path.insert(0, "tests/gpu"); import smem_model_check as s; print(",".join(s.metrics_to_ask(sys.stdin.read())))')"
  timeout -k 10 $((lim / 3)) "$NCU" --csv --profile-from-start off --clock-control none -k regex:_pass_kernel \
    --metrics "$smem_metrics" "$PY" tests/gpu/profile_chunk.py ${PROFILE_ARGS:-} > "$LOGS/ncu_smem.csv" 2>&1
  echo "ncu_smem rc=$?" >> "$LOGS/ncu_smem.csv"
  "$PY" tests/gpu/smem_model_check.py "$LOGS/ncu_smem.csv" ${PROFILE_ARGS:-} > "$LOGS/smem_model.md" 2>&1
  echo "smem_model_check rc=$?" >> "$LOGS/smem_model.md"
  timeout -k 10 $((lim - (SECONDS - t0))) "$NCU" --profile-from-start off --clock-control none -k regex:_pass_kernel \
    --section SpeedOfLight --section LaunchStats --section Occupancy --section MemoryWorkloadAnalysis \
    --section MemoryWorkloadAnalysis_Tables --section ComputeWorkloadAnalysis --section InstructionStats \
    --section WarpStateStats "$PY" tests/gpu/profile_chunk.py ${PROFILE_ARGS:-} > "$LOGS/ncu_chunk.txt" 2>&1
  record profile $? "$t0" "$lim"
elif want profile && [ -z "$NCU" ]; then
  echo "profile skipped: no ncu on this machine" >> "$LOGS/steps.txt"
fi
