#!/usr/bin/env bash
# Makes, on this machine (it reaches PyPI; the GPU machine does not), everything a GPU session carries, so
# that the session's minutes go to the GPU: a venv with the GPU machine's Python and torch (3.12, pip's
# torch 2.11.0 with CUDA 13.0; no GPU needed), the sm_90 extension and the C++ engine's GPU tests built
# against it (tests/gpu/prebuild.sh; the engine part needs build/engine-fixtures),
# and the fairseq and fla wheelhouses. All of it is git-ignored, so each session makes it anew.
#
#   tests/gpu/prepare_session.sh            # VENV=build-gpu-venv (4.8 GB, stays here), then:
#   run(carry=["build-gpu-prebuilt", "wheelhouse"], command="GPU_STEPS=... bash tests/gpu/run_all.sh")
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV="${VENV:-build-gpu-venv}"
TORCH="${TORCH:-torch==2.11.0}"
if [ ! -x "$VENV/bin/python" ]; then
  PY312="${PY312:-$(ls /root/.pyenv/versions/3.12*/bin/python3.12 2>/dev/null | tail -1 || true)}"
  PY312="${PY312:-$(command -v python3.12 || true)}"
  [ -n "$PY312" ] || { echo "prepare_session: no Python 3.12 (set PY312)" >&2; exit 1; }
  "$PY312" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "$TORCH" numpy pytest cmake ninja pybind11 "setuptools<82" wheel
fi
PY="$VENV/bin/python" bash tests/gpu/prebuild.sh
PY="$VENV/bin/python" bash benchmarks/prepare_fairseq_wheelhouse.sh
PY="$VENV/bin/python" bash benchmarks/prepare_fla_wheelhouse.sh
du -sh build-gpu-prebuilt wheelhouse
# What a device call sends: the tracked and untracked-not-ignored files, and the carried folders; the tool
# refuses more than 64 MiB.
tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{ s += $1 } END { print s }')
carried=$(du -sb build-gpu-prebuilt wheelhouse | awk '{ s += $1 } END { print s }')
limit=$((64 * 1024 * 1024))
echo "a device call sends $((tree + carried)) bytes (tree $tree, carried $carried) of $limit"
[ $((tree + carried)) -le "$limit" ] || { echo "prepare_session: that is over the device tool's 64 MiB" >&2; exit 1; }
echo "carry: [\"build-gpu-prebuilt\", \"wheelhouse\"]"
