"""benchmarks/sass_report.py: the CUDA kernels' machine code (SASS), read off the build's sm_90 objects without a GPU.

The build's own kernels must pass its check (every 16-bit tensor-core product is HMMA.16816.F32, the instruction
WMMA and gemm_chain's mma.sync both become; no bf16 chunk kernel spills), and the check must refuse listings
that break either rule. The listings below are written in cuobjdump's layout, not taken from a build."""
import glob
import os
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import sass_report  # noqa: E402

BUILD = os.environ.get("DECAYFW_BUILD", os.path.join(ROOT, "build"))
OBJECTS = sass_report.default_objects(BUILD)

GRAD_BF16 = ("_ZN7decayfw4cuda12chunk_launch58_GLOBAL__N__7419b7dd_19_decay_chunk_bf16_cu_75c6cf2d_2893116grad_pass"
             "_kernelI13__nv_bfloat16NS_5chunk6ConfigILi64ELi64ES4_EEEEvNS5_9ChunkArgsE")
GRAD_FP16 = GRAD_BF16.replace("I13__nv_bfloat16", "I6__half")


def listing(name, *instructions):
    lines = [f"\t\tFunction : {name}", '\t.headerflags\t@"EF_CUDA_SM90 EF_CUDA_VIRTUAL_SM(EF_CUDA_SM90)"']
    for i, ins in enumerate(instructions):
        lines.append(f"        /*{16 * i:04x}*/                   {ins} ;   /* 0x000fe20000000f00 */")
        lines.append("                                                   /* 0x000fe20000000f00 */")
    return "\n".join(lines)


def kernels_of(*listings):
    kernels = {}
    for text in listings:
        kernels.update(sass_report.parse_sass(text, "decay_chunk_bf16.cu"))
    names = sass_report.demangle(list(kernels))
    for k in kernels.values():
        k.name = sass_report.short_name(names[k.mangled])
    return list(kernels.values())


def test_a_listing_is_counted_by_class_with_predicates_and_modifiers():
    (k,) = kernels_of(listing(GRAD_BF16, "LDSM.16.M88.4 R4, [R2]", "HMMA.16816.F32.BF16 R8, R4, R12, R8",
                              "@P0 HMMA.16816.F32.BF16 R8, R4, R14, R8", "@!P1 STS.64 [R3], R8",
                              "LDGSTS.E.BYPASS.128 [R1], desc[UR4][R6.64]", "BAR.SYNC.DEFER_BLOCKING 0x0",
                              "MUFU.EX2 R5, R5", "EXIT"))
    assert k.name == "grad_pass_kernel<__nv_bfloat16, Config<64, 64>>(ChunkArgs)"
    assert k.instructions == 8
    assert (k.counts["LDSM"], k.counts["HMMA"], k.counts["STS"], k.counts["LDG"], k.counts["BAR"],
            k.counts["MUFU"]) == (1, 2, 1, 1, 1, 1)
    assert k.opcodes["HMMA.16816.F32.BF16"] == 2
    assert sass_report.problems([k]) == []


def test_the_check_names_a_spilling_bf16_kernel_and_a_16_bit_product_of_another_shape():
    spilling = listing(GRAD_BF16, "HMMA.16816.F32.BF16 R8, R4, R12, R8", "STL [R1+0x8], R9", "LDL R9, [R1+0x8]")
    other_shape = listing(GRAD_FP16, "HMMA.1688.F32 R8, R4, R12, R8", "STL [R1+0x8], R9")
    found = sass_report.problems(kernels_of(spilling, other_shape))
    assert len(found) == 2, found
    assert "grad_pass_kernel<__nv_bfloat16, Config<64, 64>>" in found[0] and "2 LDL/STL" in found[0]
    # fp16's grad_pass may spill (it does at M = 32 and 128), but its products must be m16n8k16 ones.
    assert "grad_pass_kernel<__half, Config<64, 64>>" in found[1] and "HMMA.1688.F32 ×1" in found[1]


def test_tf32_products_are_not_16_bit_ones():
    (k,) = kernels_of(listing(GRAD_BF16, "HMMA.1684.F32.TF32 R8, R4, R12, R8"))
    assert sass_report.problems([k]) == []
    assert "| 0 | 1 |" in sass_report.table([k])  # HMMA (16-bit), HMMA (tf32)


@pytest.mark.skipif(not OBJECTS, reason=f"no CUDA kernel objects under {BUILD} (built without nvcc)")
def test_the_built_kernels_pass_the_check(capsys):
    assert sass_report.main(["--build", BUILD, "--check"]) == 0
    out = capsys.readouterr().out
    assert "check passed" in out
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in out.splitlines() if line.startswith("| ")}
    chain = rows["grad_pass_kernel<__nv_bfloat16, Config<64, 64>>(ChunkArgs)"]
    assert int(chain[5]) > 0 and int(chain[7]) > 0, chain  # tensor-core products and ldmatrix loads
    assert int(chain[3]) == 0, chain  # no stack
    for name, cells in rows.items():  # local-memory instructions only where ptxas gave the kernel a stack frame
        if name == "kernel" or name.startswith("---"):
            continue
        assert int(cells[12]) == 0 or int(cells[3]) > 0, cells
    assert len(glob.glob(os.path.join(os.path.dirname(OBJECTS[0]), "decay_chunk_*.cu.o"))) == 3
