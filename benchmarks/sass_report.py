"""What the CUDA kernels compile to, read off the machine code (SASS) of the build's objects: no GPU needed.

For every kernel in the objects (by default the sm_90 cubins of ``decayfw_kernels_cuda`` in ``--build``):
registers, stack and spill bytes (``cuobjdump -res-usage``), and the static count of its instructions by class
(``cuobjdump -sass``): tensor-core products by shape and type, ldmatrix, shared and global loads and stores,
local memory (spills), barriers, special-function operations. Static counts, not executed ones: a loop body
counts once. Prints a Markdown table.

``--check`` also asserts what the design relies on and a GPU run would otherwise be first to show:
  - every tensor-core product on 16-bit operands is ``HMMA.16816.F32`` (fp16) or ``HMMA.16816.F32.BF16``: WMMA's m16n16k16 products and
    gemm_chain's mma.sync m16n8k16 ones are the same instruction, so the chained and unchained programs sum each
    element's k steps alike (the GPU test ``test_chained_products_give_the_same_bits`` expects the same bits);
  - no bf16 chunk kernel touches local memory (no spill: ptxas's "0 bytes spill" read off the code itself).
It exits 1 naming each kernel that breaks one.

cuobjdump comes with a full CUDA toolkit, or from PyPI (``nvidia-cuda-cuobjdump``, in scripts/requirements.txt);
``--cuobjdump`` names it, else it is looked up in the venv's ``nvidia/cu13/bin``, then CUDA_HOME, then PATH.

    .venv/bin/python benchmarks/sass_report.py --build build --check
"""
import argparse
import collections
import glob
import os
import re
import shutil
import subprocess
import sys
import sysconfig

# Instruction classes, in the table's order: (column, predicate on the opcode's first word).
CLASSES = [
    ("HMMA", lambda op: op == "HMMA"),
    ("LDSM", lambda op: op == "LDSM"),
    ("LDS", lambda op: op == "LDS"),
    ("STS", lambda op: op == "STS"),
    ("LDG", lambda op: op in ("LDG", "LDGSTS")),
    ("STG", lambda op: op in ("STG", "RED", "ATOMG")),
    ("LDL/STL", lambda op: op in ("LDL", "STL")),
    ("BAR", lambda op: op == "BAR"),
    ("MUFU", lambda op: op == "MUFU"),
]
# HMMA's operand type is a suffix (.BF16, .TF32), none for fp16; its accumulator type comes first (.F32, .F16).
SIXTEEN_BIT_HMMA = re.compile(r"^HMMA\.[0-9]+\.F(16|32)(\.BF16|\.F16)?$")
WANTED_16BIT_HMMA = re.compile(r"^HMMA\.16816\.F32(\.BF16)?$")


class Kernel:
    def __init__(self, mangled, source):
        self.mangled, self.source = mangled, source
        self.name = mangled
        self.registers = self.stack = self.local = None
        self.counts = collections.Counter()  # class -> count
        self.opcodes = collections.Counter()  # full opcode (with modifiers) -> count
        self.instructions = 0

    def is_bf16_chunk_kernel(self):
        return "__nv_bfloat16" in self.mangled and "chunk_launch" in self.mangled


def find_cuobjdump(explicit=None):
    if explicit:
        if not os.path.isfile(explicit):
            raise SystemExit(f"sass_report: --cuobjdump {explicit}: no such file")
        return explicit
    candidates = [os.path.join(sysconfig.get_paths()["purelib"], "nvidia", "cu13", "bin", "cuobjdump")]
    cuda_home = os.environ.get("CUDA_HOME", "/usr/local/cuda")
    candidates.append(os.path.join(cuda_home, "bin", "cuobjdump"))
    for path in candidates:
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return shutil.which("cuobjdump")


def default_objects(build):
    pattern = os.path.join(build, "kernels", "cuda", "CMakeFiles", "decayfw_kernels_cuda.dir", "*.cu.o")
    return sorted(glob.glob(pattern))


def demangle(names):
    if not names or not shutil.which("c++filt"):
        return {n: n for n in names}
    out = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, check=True).stdout
    return dict(zip(names, out.splitlines()))


def short_name(demangled):
    """decayfw::cuda::chunk_launch::(anonymous namespace)::grad_pass_kernel<__nv_bfloat16, decayfw::chunk::Config<64,
    64, __nv_bfloat16> >(...) -> grad_pass_kernel<__nv_bfloat16, Config<64, 64>>"""
    name = demangled.split("(")[0] if "(" in demangled and "<" in demangled.split("(")[0] else demangled
    name = re.sub(r"(decayfw::|cuda::|chunk_launch::|\(anonymous namespace\)::|chunk::|cta::)", "", name)
    name = re.sub(r"Config<(\d+), (\d+), [^>]*>", r"Config<\1, \2>", name)
    name = re.sub(r"^void ", "", name)
    return re.sub(r"\s*>\s*>", ">>", name)


def parse_sass(text, source):
    """cuobjdump -sass's listing -> {mangled name: Kernel}."""
    kernels, current = {}, None
    for line in text.splitlines():
        m = re.match(r"\s*Function : (\S+)", line)
        if m:
            current = kernels.setdefault(m.group(1), Kernel(m.group(1), source))
            continue
        m = re.match(r"\s*/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P[T0-9]+\s+)?([A-Z0-9_.]+)", line)
        if m and current is not None:
            opcode = m.group(1)
            first = opcode.split(".")[0]
            current.instructions += 1
            current.opcodes[opcode] += 1
            for column, wanted in CLASSES:
                if wanted(first):
                    current.counts[column] += 1
                    break
    return kernels


def parse_resources(text, kernels):
    name = None
    for line in text.splitlines():
        m = re.match(r"\s*Function (\S+):", line)
        if m:
            name = m.group(1)
            continue
        m = re.match(r"\s*REG:(\d+) STACK:(\d+) SHARED:\d+ LOCAL:(\d+)", line)
        if m and name in kernels:
            k = kernels[name]
            k.registers, k.stack, k.local = (int(g) for g in m.groups())


def read_objects(cuobjdump, objects):
    kernels = {}
    for obj in objects:
        if not os.path.isfile(obj):
            raise SystemExit(f"sass_report: {obj}: no such object file (build the CUDA kernels first)")
        source = os.path.basename(obj).replace(".cu.o", ".cu")
        sass = subprocess.run([cuobjdump, "-sass", obj], capture_output=True, text=True)
        if sass.returncode != 0:
            raise SystemExit(f"sass_report: cuobjdump -sass {obj} failed: {sass.stderr.strip()}")
        found = parse_sass(sass.stdout, source)
        if not found:  # launch code only (decay_chunk.cu)
            continue
        res = subprocess.run([cuobjdump, "-res-usage", obj], capture_output=True, text=True, check=True)
        parse_resources(res.stdout, found)
        kernels.update(found)
    if not kernels:
        raise SystemExit("sass_report: the objects hold no device code (built for a virtual architecture only?)")
    names = demangle(list(kernels))
    for k in kernels.values():
        k.name = short_name(names[k.mangled])
    return sorted(kernels.values(), key=lambda k: (k.source, k.name))


def problems(kernels):
    """What --check refuses, one line per kernel and rule."""
    out = []
    for k in kernels:
        odd = sorted(op for op in k.opcodes if SIXTEEN_BIT_HMMA.match(op) and not WANTED_16BIT_HMMA.match(op))
        if odd:
            out.append(f"{k.source}: {k.name}: 16-bit tensor-core products other than HMMA.16816.F32: "
                       + ", ".join(f"{op} ×{k.opcodes[op]}" for op in odd))
        spills = k.counts["LDL/STL"]
        if k.is_bf16_chunk_kernel() and (spills or k.local):
            out.append(f"{k.source}: {k.name}: local memory in a bf16 chunk kernel ({spills} LDL/STL "
                       f"instructions, {k.local or 0} bytes of local memory)")
    return out


def table(kernels):
    cols = ["kernel", "source", "regs", "stack", "instructions", "HMMA (16-bit)", "HMMA (tf32)"] + [
        c for c, _ in CLASSES if c != "HMMA"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for k in kernels:
        h16 = sum(n for op, n in k.opcodes.items() if SIXTEEN_BIT_HMMA.match(op))
        h32 = sum(n for op, n in k.opcodes.items() if op.startswith("HMMA.") and "TF32" in op)
        row = [k.name, k.source, k.registers, k.stack, k.instructions, h16, h32] + [
            k.counts[c] for c, _ in CLASSES if c != "HMMA"]
        lines.append("| " + " | ".join("" if v is None else str(v) for v in row) + " |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default="build", help="the CMake build folder (default: build)")
    ap.add_argument("objects", nargs="*", help="object files or cubins (default: the build's CUDA kernels)")
    ap.add_argument("--cuobjdump", help="path of cuobjdump")
    ap.add_argument("--filter", default="", help="only kernels whose name contains this")
    ap.add_argument("--check", action="store_true", help="exit 1 if a kernel breaks the rules above")
    args = ap.parse_args(argv)
    cuobjdump = find_cuobjdump(args.cuobjdump)
    if not cuobjdump:
        raise SystemExit("sass_report: no cuobjdump (pip install nvidia-cuda-cuobjdump, or a CUDA toolkit with it)")
    objects = args.objects or default_objects(args.build)
    if not objects:
        raise SystemExit(f"sass_report: no CUDA kernel objects under {args.build} (configure with nvcc and build)")
    kernels = [k for k in read_objects(cuobjdump, objects) if args.filter in k.name]
    print(f"{len(kernels)} kernels from {len(objects)} objects ({cuobjdump}); static instruction counts\n")
    print(table(kernels))
    if args.check:
        found = problems(kernels)
        hmma = collections.Counter()
        for k in kernels:
            for op, n in k.opcodes.items():
                if op.startswith("HMMA."):
                    hmma[op] += n
        print("\ntensor-core instructions: " + ", ".join(f"{op} ×{n}" for op, n in sorted(hmma.items())))
        if found:
            print("\n".join(["", "check FAILED:"] + found))
            return 1
        print("check passed: every 16-bit product is HMMA.16816.F32; no bf16 chunk kernel uses local memory")
    return 0


if __name__ == "__main__":
    sys.exit(main())
