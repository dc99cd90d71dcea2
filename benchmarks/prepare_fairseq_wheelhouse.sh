#!/usr/bin/env bash
# Downloads, on a machine that reaches PyPI, what benchmarks/install_fairseq_offline.sh needs to install the
# project's fairseq (fairseq-fixed 0.12.3.1, as scripts/install_fairseq.sh pins it) on the GPU machine, which
# has no network: binary wheels for that machine's Python (default 3.12, manylinux x86_64), the pure-Python
# antlr4 runtime built into a wheel here, and the fairseq-fixed sdist (built there: its Cython extensions).
# No torch (the GPU machine has its own). scikit-learn, SciPy and lxml are left out on purpose (~60 MB for
# 3.12, over the device tool's 64 MiB carry limit); fairseq imports them at start-up but a language-model run
# never calls them, and benchmarks/fairseq_offline.py stubs them where they are absent.
#
#   benchmarks/prepare_fairseq_wheelhouse.sh [DIR]       # default wheelhouse/fairseq (git-ignored)
#   PYVER=3.11 benchmarks/prepare_fairseq_wheelhouse.sh /tmp/wh311   # for a test on this machine
#   WITH_NUMPY=1 ...                                      # add NumPy 1.26.4 (18 MB) for a machine without one
#
# NumPy is left out by default: the GPU machine has its own (2.5), which fairseq's language-model path
# runs with, and its wheel would take the carry over 64 MiB with the working tree and the prebuilt extension.
#
# Then carry the folder to the GPU machine (run(carry=["wheelhouse"])); tests/gpu/run_all.sh installs from it.
set -euo pipefail
cd "$(dirname "$0")/.."
WH="${1:-wheelhouse/fairseq}"
PYVER="${PYVER:-3.12}"
ABI="cp${PYVER/./}"
# A Python with torch, setuptools and wheel (the project venv): pip reads the fairseq sdist's metadata by
# running its setup.py, which imports torch.
PY="${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || command -v python3 )}"
"$PY" -c "import torch, setuptools, wheel" 2>/dev/null || {
  echo "prepare_fairseq_wheelhouse: $PY lacks torch/setuptools/wheel; set PY to the project venv's python" >&2; exit 1; }
PIP=("$PY" -m pip --disable-pip-version-check -q)
mkdir -p "$WH"

# Run-time dependencies of fairseq's import and language-model path, pinned as scripts/install_fairseq.sh pins
# them; build dependencies of its Cython extensions (Cython 3.0, which supports Python 3.12 and NumPy 1 and 2);
# NumPy only when asked for (WITH_NUMPY=1; installed there only when absent).
BINARY=(
  "hydra-core==1.3.2" "omegaconf==2.3.0" "PyYAML==6.0.2" "bitarray==2.9.2" "regex==2024.11.6"
  "sacrebleu==2.4.3" "portalocker==2.10.1" "tabulate==0.9.0" "colorama==0.4.6" "tqdm==4.67.1"
  "packaging==24.2" "Cython==3.0.11" "setuptools==69.5.1" "wheel==0.43.0"
)
[ "${WITH_NUMPY:-0}" = 1 ] && BINARY+=("numpy==1.26.4")
[ "${WITH_NUMPY:-0}" = 1 ] || rm -f "$WH"/numpy-*.whl  # a wheelhouse made before keeps none
"${PIP[@]}" download --only-binary=:all: --no-deps --python-version "$PYVER" --implementation cp --abi "$ABI" \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  -d "$WH" "${BINARY[@]}"
# antlr4-python3-runtime 4.9.3 (omegaconf's parser) exists only as an sdist; it is pure Python, so the wheel
# built here installs on any Python 3.
if ! ls "$WH"/antlr4_python3_runtime-4.9.3-py3-none-any.whl >/dev/null 2>&1; then
  "${PIP[@]}" wheel --no-deps --no-build-isolation -w "$WH" "antlr4-python3-runtime==4.9.3"
fi
# fairseq-fixed: an sdist (setup.py imports torch, so no build isolation: that would fetch a torch here)
if ! ls "$WH"/fairseq_fixed-0.12.3.1.tar.gz >/dev/null 2>&1; then
  "${PIP[@]}" download --no-deps --no-binary :all: --no-build-isolation -d "$WH" "fairseq-fixed==0.12.3.1"
fi
{
  for r in "${BINARY[@]}" "antlr4-python3-runtime==4.9.3"; do echo "$r"; done
} > "$WH/requirements.txt"
echo "fairseq-fixed==0.12.3.1" > "$WH/fairseq.txt"
echo "python $PYVER ($ABI) wheelhouse in $WH:"
ls -l "$WH" | awk 'NR > 1 { printf "%10.1f KiB  %s\n", $5 / 1024, $9 }'
du -sh "$WH"
