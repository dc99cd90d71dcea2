#!/usr/bin/env bash
# Installs the project's fairseq (fairseq-fixed 0.12.3.1) with no network, from the wheelhouse that
# benchmarks/prepare_fairseq_wheelhouse.sh made, without changing the Python environment it runs in:
#
# - dependencies that are absent (or, for hydra-core/omegaconf/antlr4, of another version) are installed with
#   `pip install --no-index --find-links WHEELHOUSE --no-deps --target DEST/site`; present ones are used as they are
#   (torch, and NumPy when there is one, stay the machine's own);
# - fairseq itself, FAIRSEQ_INSTALL=source (default): the sdist unpacked into DEST/src with only its two Cython
#   extensions built in place (data_utils_fast, token_block_utils_fast: what language-model training needs; the
#   C++ extensions for BLEU, NAT and alignment models are skipped — seconds instead of minutes);
#   FAIRSEQ_INSTALL=pip: `pip install --no-index --no-deps --no-build-isolation --target DEST/site` of the sdist,
#   as scripts/install_fairseq.sh does (builds every extension); FAIRSEQ_INSTALL=auto: source, then pip.
#
# Writes DEST/pythonpath (prepend it to PYTHONPATH) and exits 0 only when `import fairseq` and its Cython
# extensions work (with benchmarks/fairseq_offline.py's stubs for sklearn/scipy/lxml where those are absent).
# If fairseq already imports, it does nothing.
#
#   benchmarks/install_fairseq_offline.sh [WHEELHOUSE] [DEST]     # defaults: wheelhouse/fairseq build-fairseq
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
WH="$(cd "${1:-wheelhouse/fairseq}" 2>/dev/null && pwd)" || { echo "install_fairseq_offline: no wheelhouse at ${1:-wheelhouse/fairseq}" >&2; exit 2; }
DEST="${2:-build-fairseq}"; mkdir -p "$DEST"; DEST="$(cd "$DEST" && pwd)"
PY="${PY:-$(command -v python || command -v python3)}"
MODE="${FAIRSEQ_INSTALL:-source}"
PP="$DEST/site:$DEST/src"
export PYTHONPATH="$PP:$ROOT/benchmarks${PYTHONPATH:+:$PYTHONPATH}"
t0=$SECONDS

check() {
  "$PY" - <<'PYEOF'
import fairseq_offline  # stubs for absent sklearn/scipy/lxml
import fairseq, fairseq.data.data_utils_fast, fairseq.data.token_block_utils_fast  # noqa
import fairseq_cli.train, fairseq.sequence_generator  # noqa
print("fairseq", fairseq.__version__, "from", fairseq.__file__, "| stubbed:", fairseq_offline.STUBBED or "none")
PYEOF
}

echo "python: $PY ($("$PY" -c 'import sys; print(sys.version.split()[0])')); wheelhouse: $WH; dest: $DEST; mode: $MODE"
if check 2>/dev/null; then
  echo "fairseq already importable; nothing installed"
  echo "$PP" > "$DEST/pythonpath"; exit 0
fi

# 1. dependencies that are missing
MISSING="$("$PY" - "$WH/requirements.txt" <<'PYEOF'
import sys, importlib.metadata as md
exact = {"hydra-core", "omegaconf", "antlr4-python3-runtime"}
need = []
for line in open(sys.argv[1]):
    req = line.strip()
    if not req:
        continue
    name, version = req.split("==")
    try:
        have = md.version(name)
    except md.PackageNotFoundError:
        have = None
    if name == "Cython" and have and int(have.split(".")[0]) < 3:
        have = None  # Cython 0.29 may not build against NumPy 2 headers: use the wheelhouse's 3.0
    if have is None or (name in exact and have != version):
        need.append(req)
    print(f"  {name}: {have or 'absent'}{' -> ' + version if req in need else ''}", file=sys.stderr)
print(" ".join(need))
PYEOF
)"
if [ -n "$MISSING" ]; then
  echo "installing into $DEST/site: $MISSING"
  # shellcheck disable=SC2086
  "$PY" -m pip install --disable-pip-version-check -q --no-index --find-links "$WH" --no-deps --upgrade \
    --target "$DEST/site" $MISSING || {
    # no working pip: a wheel is a zip of what goes into site-packages, so unpacking it is enough to import it
    echo "pip install failed; unpacking the wheels into $DEST/site instead" >&2
    "$PY" - "$WH" "$DEST/site" $MISSING <<'PYEOF' || { echo "FAILED: installing the dependencies" >&2; exit 3; }
import glob, os, re, sys, zipfile
wh, site, reqs = sys.argv[1], sys.argv[2], sys.argv[3:]
os.makedirs(site, exist_ok=True)
for req in reqs:
    name, version = req.split("==")
    stem = re.sub(r"[-_.]+", "_", name).lower()
    found = [w for w in glob.glob(os.path.join(wh, "*.whl"))
             if re.sub(r"[-_.]+", "_", os.path.basename(w).split("-")[0]).lower() == stem
             and os.path.basename(w).split("-")[1] == version]
    if not found:
        sys.exit(f"no wheel for {req} in {wh}")
    zipfile.ZipFile(found[0]).extractall(site)
    print("unpacked", os.path.basename(found[0]))
PYEOF
  }
fi
echo "dependencies ready ($((SECONDS - t0)) s)"

source_build() {
  local tmp="$DEST/unpack"
  rm -rf "$tmp" "$DEST/src" && mkdir -p "$tmp" "$DEST/src"
  tar -xzf "$WH/fairseq_fixed-0.12.3.1.tar.gz" -C "$tmp" || return 1
  mv "$tmp"/fairseq_fixed-0.12.3.1/fairseq "$tmp"/fairseq_fixed-0.12.3.1/fairseq_cli "$DEST/src/" || return 1
  rm -rf "$tmp"
  (cd "$DEST/src" && "$PY" - <<'PYEOF'
import os, sys
import numpy
from setuptools import Extension, setup
from Cython.Build import cythonize
print("building with Cython", __import__("Cython").__version__, "numpy", numpy.__version__, flush=True)
exts = [Extension(f"fairseq.data.{n}", [f"fairseq/data/{n}.pyx"], language="c++",
                  include_dirs=[numpy.get_include()], extra_compile_args=["-std=c++11", "-O3"])
        for n in ("data_utils_fast", "token_block_utils_fast")]
setup(name="fairseq-cython-extensions", ext_modules=cythonize(exts, language_level=3, quiet=True),
      script_args=["-q", "build_ext", "--inplace", "-j", str(min(2, os.cpu_count() or 1))])
PYEOF
  )
}

pip_build() {
  env -u CUDA_HOME MAX_JOBS="$(nproc)" "$PY" -m pip install --disable-pip-version-check -q --no-index \
    --find-links "$WH" --no-deps --no-build-isolation --upgrade --target "$DEST/site" "fairseq-fixed==0.12.3.1"
}

ok=1
case "$MODE" in
  source) source_build && ok=0 ;;
  pip) pip_build && ok=0 ;;
  auto) { source_build || { echo "source build failed; trying pip" >&2; pip_build; }; } && ok=0 ;;
  *) echo "FAIRSEQ_INSTALL must be source, pip or auto, not $MODE" >&2; exit 2 ;;
esac
if [ "$ok" -ne 0 ]; then echo "FAILED: building fairseq ($MODE)" >&2; exit 4; fi
if ! check; then echo "FAILED: fairseq does not import after the $MODE install" >&2; exit 5; fi
echo "$PP" > "$DEST/pythonpath"
echo "fairseq installed ($MODE) in $((SECONDS - t0)) s; PYTHONPATH+=$PP"
