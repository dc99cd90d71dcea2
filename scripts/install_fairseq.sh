#!/usr/bin/env bash
# Installs a real, unmodified fairseq into the project venv, deterministically.
#
# Choice: fairseq-fixed 0.12.3.1 from PyPI rather than patching fairseq 0.12.2 at install time.
# fairseq 0.12.2 does not import on Python 3.11 (mutable dataclass defaults in FairseqConfig and
# TransformerConfig, and its hydra-core 1.0.7 pin fails on 3.11 too). fairseq-fixed is the same
# 0.12 code base with exactly those fixes (default_factory, hydra-core 1.3.2, omegaconf 2.3.0),
# published as an sdist we build here, so no patch of ours is needed. It is installed with
# --no-deps and the pinned dependency list below, so pip never pulls a second torch (or torchaudio)
# into the venv: Debian's torch 1.13.1 stays the only one. Its Cython extensions
# (data_utils_fast, token_block_utils_fast) are built by the sdist's setup.py.
set -euo pipefail
VENV="${DECAYFW_VENV:?DECAYFW_VENV must point at the project venv}"
PY="$VENV/bin/python"

if "$PY" - <<'PYEOF' 2>/dev/null; then exit 0; fi
import importlib.metadata as md
assert md.version("fairseq-fixed") == "0.12.3.1"
import fairseq, fairseq.data.data_utils_fast, fairseq.data.token_block_utils_fast  # noqa
PYEOF

PIP=("$PY" -m pip install -q --disable-pip-version-check)
# Build and run-time dependencies, pinned (torch and numpy come from Debian).
"${PIP[@]}" \
  "cython==0.29.37" "setuptools==69.5.1" "wheel==0.43.0" \
  "hydra-core==1.3.2" "omegaconf==2.3.0" "antlr4-python3-runtime==4.9.3" "PyYAML==6.0.2" \
  "bitarray==2.9.2" "regex==2024.11.6" "sacrebleu==2.4.3" "portalocker==2.10.1" "tabulate==0.9.0" \
  "colorama==0.4.6" "lxml==5.3.0" "scikit-learn==1.5.2" "scipy==1.14.1" "joblib==1.4.2" \
  "threadpoolctl==3.5.0" "tqdm==4.67.1" "cffi==1.17.1" "packaging==24.2"
# setup.py also builds its small CPU C++ extensions (libbleu, libbase, libnat); CUDA ones only
# when CUDA_HOME is set, which we unset. pip caches the built wheel, so this runs once per machine.
env -u CUDA_HOME MAX_JOBS="$(nproc)" "${PIP[@]}" --no-deps --no-build-isolation "fairseq-fixed==0.12.3.1"
"$PY" -c "import fairseq, fairseq.data.data_utils_fast, fairseq.data.token_block_utils_fast; print('fairseq', fairseq.__version__)"
