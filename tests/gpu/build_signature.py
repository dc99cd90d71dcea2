"""Prints what a prebuilt decayfw extension must match to be used: torch's version, CUDA and C++ ABI,
the Python version, and a hash of the native sources it was compiled from (kernels/, bindings/, the CMake
files; with --engine also analyzer/ and tests/, for the engine binaries prebuild.sh makes).
tests/gpu/prebuild.sh writes it next to the build; tests/gpu/run_all.sh builds afresh unless its own
signature is the same, so a stale or foreign build is never what gets tested."""
import hashlib
import os
import sys

import torch

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NATIVE = (".cpp", ".cu", ".cuh", ".h", ".hpp", ".cmake", "CMakeLists.txt")


def source_hash(tops=("kernels", "bindings", "cmake")):
    h = hashlib.sha256()
    files = [os.path.join(ROOT, "CMakeLists.txt")]
    for top in tops:
        for d, _, names in os.walk(os.path.join(ROOT, top)):
            files += [os.path.join(d, n) for n in names if n.endswith(NATIVE)]
    for path in sorted(files):
        h.update(os.path.relpath(path, ROOT).encode() + b"\0")
        with open(path, "rb") as fh:
            h.update(fh.read() + b"\0")
    return h.hexdigest()[:16]


print(f"torch {torch.__version__} cuda {torch.version.cuda} cxx11abi {int(torch._C._GLIBCXX_USE_CXX11_ABI)} "
      f"python {sys.version_info.major}.{sys.version_info.minor} sources {source_hash()}"
      + (f" engine {source_hash(('kernels', 'bindings', 'cmake', 'analyzer', 'tests'))}" if "--engine" in sys.argv else ""))
