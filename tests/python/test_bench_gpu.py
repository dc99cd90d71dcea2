"""benchmarks/bench_gpu.py where there is no GPU (CI): its HBM traffic model of the chunk path, the
mapping of profiler kernel names to the chunk passes, and its refusal to time anything without CUDA.
The timings themselves need the GPU machine (tests/gpu/run_all.sh)."""
import os
import subprocess
import sys

import pytest
import torch

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import bench_gpu  # noqa: E402

BENCH = os.path.join(ROOT, "benchmarks", "bench_gpu.py")
SIZES = [(N, T, D, M) for N in (64, 256) for T in (512, 2048, 8192) for D in (64, 128) for M in (32, 64)]


def test_profiler_kernel_names_map_to_the_chunk_passes():
    name = "void decayfw::cuda::chunk_launch::(anonymous namespace)::{}_kernel<__nv_bfloat16, " \
           "decayfw::chunk::Config<64, 64, __nv_bfloat16> >(decayfw::chunk::ChunkArgs)"
    for k in bench_gpu.CHUNK_KERNELS:  # dstate_pass contains state_pass: each must still map to itself
        assert bench_gpu.kernel_of(name.format(k)) == k
    assert bench_gpu.kernel_of("void at::native::vectorized_elementwise_kernel<4, at::native::FillFunctor<float>>") == "other"
    assert bench_gpu.kernel_of("Memset (Device)") == "other"


@pytest.mark.parametrize("forward", bench_gpu.CHUNK_FORWARDS)
@pytest.mark.parametrize("N,T,D,M", SIZES)
def test_traffic_model_moves_at_least_the_io_floor(N, T, D, M, forward):
    """Every byte of the floor (inputs, y, dy, gradients) is read or written by some pass, so the model
    can never be below it; and the fp32 state workspace it adds grows as N·T/C·D·M."""
    model = bench_gpu.chunk_kernel_bytes(N, T, D, M, forward=forward)
    assert set(model) == set(bench_gpu.CHUNK_KERNELS)
    floor = bench_gpu.io_floor_bytes(N, T, D, M, True)
    assert floor < sum(model.values()) < 5 * floor
    half = bench_gpu.chunk_kernel_bytes(N, T // 2, D, M, forward=forward)
    assert sum(half.values()) == pytest.approx(sum(model.values()) / 2, rel=0.05)  # linear in T (+1 state slot)


@pytest.mark.parametrize("N,T,D,M", SIZES)
def test_reusing_the_forward_states_saves_exactly_one_state_pass(N, T, D, M):
    reused = bench_gpu.chunk_kernel_bytes(N, T, D, M)
    recomputed = bench_gpu.chunk_kernel_bytes(N, T, D, M, reuse_states=False)
    assert recomputed["state_pass"] == 2 * reused["state_pass"]
    assert {k: v for k, v in recomputed.items() if k != "state_pass"} == {k: v for k, v in reused.items() if k != "state_pass"}


@pytest.mark.parametrize("N,T,D,M", SIZES)
def test_fused_forward_reads_what_output_pass_reads_once(N, T, D, M):
    """forward_pass reads q, k, f, v, z and writes y, as output_pass does, but writes the chunk states
    (one slot more) instead of reading them back, and no state_pass runs; the backward is the same. With
    save_chunk_states=False it writes no states, and the backward's state_pass recomputes them."""
    split, fused = (bench_gpu.chunk_kernel_bytes(N, T, D, M, forward=f) for f in ("split", "fused"))
    C = bench_gpu.compiled_chunk(M)
    state_slot = N * D * M * 4
    chunks = -(-T // C)
    assert fused["forward_pass"] == split["output_pass"] + state_slot
    assert fused["state_pass"] == fused["output_pass"] == split["forward_pass"] == 0
    assert {k: fused[k] for k in ("dstate_pass", "grad_pass")} == {k: split[k] for k in ("dstate_pass", "grad_pass")}
    recomputed = bench_gpu.chunk_kernel_bytes(N, T, D, M, reuse_states=False, forward="fused")
    assert recomputed["forward_pass"] == fused["forward_pass"] - (chunks + 1) * state_slot
    assert recomputed["state_pass"] == split["state_pass"]


def test_traffic_model_table_prints_without_a_gpu():
    r = subprocess.run([sys.executable, BENCH, "--traffic-model", "--N", "64", "--T", "8192", "--D", "128", "--M", "64"],
                       capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bindings", "python")))
    assert r.returncode == 0, r.stderr
    lines = [line.rstrip() for line in r.stdout.splitlines() if line.startswith("| 64 | 8192 | 128 | 64 |")]
    cells = lambda line: [c.strip() for c in line.split("|")[1:-1]]
    traffic = {cells(line)[4]: line for line in lines if len(cells(line)) == 14}  # N T D M forward, 5 kernels, 4
    assert set(traffic) == {"split", "fused"}, r.stdout
    assert traffic["split"].endswith("| 47% | 40% |") and traffic["fused"].endswith("| 58% | 51% |"), r.stdout
    # The compute model: each forward form with each form of the diagonal blocks.
    compute = {(cells(line)[4], cells(line)[5]): cells(line)[-1] for line in lines if len(cells(line)) == 12}
    # (Shared memory binds every kernel at this size, so the bounds follow SMEM_WAVEFRONTS: MUFU alone gave
    # 38/28/39% split and 42/29/44% fused.)
    # (The chained products took a whole chunk's y off shared memory: factored and chunk 24/29% split and 24/30%
    # fused before them; the chunk form's dV and dK chains its gradient's transposed products: 31/32% before them.)
    assert compute == {("split", "factored"): "25%", ("split", "elementwise"): "14%", ("split", "tensor"): "19%",
                       ("split", "chunk"): "33%", ("fused", "factored"): "25%", ("fused", "elementwise"): "14%",
                       ("fused", "tensor"): "20%", ("fused", "chunk"): "34%"}, r.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_refuses_to_time_without_cuda():
    r = subprocess.run([sys.executable, BENCH, "--reps", "1"], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, "bindings", "python")))
    assert r.returncode == 1
    assert "CUDA is not available" in r.stderr and "Traceback" not in r.stderr


def test_sweep_runs_the_target_lengths_first():
    """A run stopped by --time-budget must already have the rows the issue's targets read (T ≥ 2048)."""
    order = bench_gpu.sweep_order([64, 256], [512, 2048, 8192], [128, 64], [32, 64])
    assert sorted(order) == sorted(SIZES)
    assert [T for _, T, _, _ in order] == [2048] * 8 + [8192] * 8 + [512] * 8
    assert order[:2] == [(64, 2048, 128, 32), (256, 2048, 128, 32)]


@pytest.mark.parametrize("diagonal", [d for d in bench_gpu.DIAGONALS if d != "chunk"])  # chunk: below
@pytest.mark.parametrize("wide", [0.0, 0.25, 1.0])
@pytest.mark.parametrize("N,T,D,M", SIZES)
def test_special_function_model_scales_with_the_work(N, T, D, M, wide, diagonal):
    """chunk_kernel_sfu counts special-function operations per chunk: linear in the chunks and sequences, the
    forward forms' serial passes as the programs run them, the gradient pass the largest, and every pass
    with diagonal blocks dearer the more of their columns are wide (per pair), except in the elementwise
    form, where all are."""
    sfu = lambda **kw: bench_gpu.chunk_kernel_sfu(diagonal=diagonal, **kw)
    split, fused = (sfu(N=N, T=T, D=D, M=M, forward=f, wide=wide) for f in bench_gpu.CHUNK_FORWARDS)
    chunks = -(-T // bench_gpu.compiled_chunk(M))
    one = sfu(N=1, T=bench_gpu.compiled_chunk(M), D=D, M=M, wide=wide)
    assert {k: round(v * N * chunks) for k, v in one.items()} == split
    assert split["forward_pass"] == fused["state_pass"] == fused["output_pass"] == 0
    C, S, tiles = bench_gpu.compiled_chunk(M), bench_gpu.SUB, D // 64
    # The fused pass takes each chunk's log gates once, where the split pair takes them in both passes; but,
    # one row tile per CTA, it takes the key side's gates and Pd's wide columns for every tile, where
    # output_pass takes them once (and, in the factored form, scales the narrow key columns' diagonal rows
    # for Pd in every tile, where output_pass skips them after the first).
    w = 1.0 if diagonal == "elementwise" else wide
    pd = w * (C // S) * bench_gpu.PAIRS * M
    kept = (1 - w) * C * M if diagonal == "factored" else 0.0
    key_side_again = (tiles - 1) * (2 * C * M + pd + kept)
    gates_once = tiles * 2 * C * (M + 64)
    assert fused["forward_pass"] + N * chunks * gates_once == pytest.approx(
        split["state_pass"] + split["output_pass"] + N * chunks * key_side_again, abs=2)
    assert split["grad_pass"] == max(split.values())
    recomputed = sfu(N=N, T=T, D=D, M=M, reuse_states=False, wide=wide)
    assert recomputed["state_pass"] == 2 * split["state_pass"]
    wider = sfu(N=N, T=T, D=D, M=M, wide=1.0)
    for kernel in ("output_pass", "grad_pass"):
        assert (split[kernel] < wider[kernel]) == (wide < 1.0 and diagonal != "elementwise")
    for kernel in ("state_pass", "dstate_pass"):
        assert split[kernel] == wider[kernel]


def test_the_model_refuses_an_unknown_diagonal_form():
    with pytest.raises(ValueError, match="diagonal must be one of"):
        bench_gpu.chunk_kernel_sfu(1, 64, 128, 64, diagonal="per-element")


def test_gradient_pass_special_functions_for_one_chunk():
    """One bf16 chunk, M = 64, C = 64, D = 128, counted by hand from kernels/cuda/chunk/.
    Diagonal blocks on tensor cores (no wide column): per row tile, the row gates 8192 (two each), the
    inter-chunk scalings 16384, the accumulations into DQ, DK 8192 and into Y, DV 8192, the causal loop
    (y's and dq's, sharing the scaled k and v) 36864 (per sub-chunk I: 16·64 q + 16(I + 1)·128 k and v +
    16·64 dy + 16·64 into Y + 16·64 into DQ), the dv/dk loop 36864 (per sub-chunk J: 2·16·128 +
    (64 − 16J)·128), σ(−z) 8192; per chunk, the key gates 8192 and σ(−f) 8192.
    Elementwise (every column per pair): the loops skip the zeroed diagonal rows' scalings, 16·128 per
    sub-chunk and loop, and add Rd 4·136·64 = 34816 and the paired terms 4·128·72 = 36864 per tile, and
    Pd 34816 once.
    Factored, no wide column: the causal loop of the first tile scales every row as the tensor form does
    (the diagonal rows' k for Pd, v for Rd, kept in fp32); the second skips the diagonal rows' k, 16·64 per
    sub-chunk; the dv/dk loop skips its diagonal rows' 16·128 per sub-chunk in both; the paired terms
    take 4·128·30 = 15360 per tile."""
    tile = 8192 + 16384 + 8192 + 8192 + 36864 + 36864 + 8192
    assert bench_gpu.chunk_kernel_sfu(1, 64, 128, 64, diagonal="tensor")["grad_pass"] == 8192 + 2 * tile + 8192
    skipped = 2 * 4 * 16 * 128
    wide_tile = tile - skipped + 34816 + 36864
    assert bench_gpu.chunk_kernel_sfu(1, 64, 128, 64, diagonal="elementwise")["grad_pass"] == (
        8192 + 2 * wide_tile + 34816 + 8192)
    factored_tile = tile - 4 * 16 * 128 + 15360
    assert bench_gpu.chunk_kernel_sfu(1, 64, 128, 64)["grad_pass"] == 8192 + 2 * factored_tile - 4 * 16 * 64 + 8192


def test_chunk_form_special_functions_take_each_element_once():
    """The chunk form, every chunk whole, per row tile of grad_pass (C = 64, M = 64, R = 64): z's log gates
    2·64·64 = 8192, the four inter-chunk operands 16384, dk's and dv's inter-chunk products' decays 8192, the
    chunk's K and V 8192, its four products' decays 16384 (y's and dq's summed with their inter-chunk
    products), σ(−z) 8192; key gates and df 8192 each, once. output_pass: a tile's z gates 8192, Q, K, V
    12288 and y's decays 4096, the key gates once."""
    tile = 8192 + 16384 + 8192 + 8192 + 16384 + 8192
    assert bench_gpu.chunk_kernel_sfu(1, 64, 128, 64, diagonal="chunk")["grad_pass"] == 8192 + 2 * tile + 8192
    assert bench_gpu.chunk_kernel_sfu(1, 64, 128, 64, diagonal="chunk", forward="fused")["output_pass"] == 0
    out = bench_gpu.chunk_kernel_sfu(1, 64, 128, 64, diagonal="chunk", forward="split")
    assert out["output_pass"] == 8192 + 2 * (8192 + 12288 + 4096)
    with pytest.raises(ValueError, match="wide must be 0"):
        bench_gpu.chunk_kernel_sfu(1, 64, 128, 64, diagonal="chunk", wide=0.5)
    # The factored form's whole chunks: the chunk form's count, plus Pd's factors 2·64·64 = 8192 once, and per
    # tile Rd's 8192 and the factored diagonal terms of rows and keys, 4·64·30 = 7680 each.
    assert bench_gpu.chunk_kernel_sfu(1, 64, 128, 64, whole=True)["grad_pass"] == (
        8192 + 2 * tile + 8192 + 8192 + 2 * (8192 + 7680 + 7680))
    fused = bench_gpu.chunk_kernel_sfu(1, 64, 128, 64, forward="fused", whole=True)
    assert fused["forward_pass"] == bench_gpu.chunk_kernel_sfu(1, 64, 128, 64, forward="fused", diagonal="chunk")[
        "forward_pass"] + 2 * (8192 + 7680) and fused["output_pass"] == 0
    with pytest.raises(ValueError, match="only the factored and chunk forms"):
        bench_gpu.chunk_kernel_sfu(1, 64, 128, 64, diagonal="tensor", whole=True)
    # Linear in the chunks and sequences; the fused pass takes the log gates once but the key side per tile.
    for N, T, D, M in SIZES:
        split, fused = (bench_gpu.chunk_kernel_sfu(N, T, D, M, forward=f, diagonal="chunk") for f in ("split", "fused"))
        C, tiles = bench_gpu.compiled_chunk(M), D // 64
        chunks = -(-T // C)
        one = bench_gpu.chunk_kernel_sfu(1, C, D, M, diagonal="chunk")
        assert {k: v * N * chunks for k, v in one.items()} == split
        assert fused["forward_pass"] + N * chunks * tiles * 2 * C * (M + 64) == (
            split["state_pass"] + split["output_pass"] + N * chunks * (tiles - 1) * 2 * C * M)
        assert split["grad_pass"] == max(split.values())


REPORT = os.path.join(ROOT, "build", "benchmarks", "smem_bank_report")


@pytest.mark.skipif(not os.access(REPORT, os.X_OK), reason="build/benchmarks/smem_bank_report is not built")
@pytest.mark.parametrize("M, D, diagonal", [(64, 128, "factored"), (32, 64, "tensor"), (64, 64, "elementwise"),
                                              (32, 128, "chunk")])
def test_shared_memory_table_is_what_the_programs_do_now(M, D, diagonal):
    """SMEM_WAVEFRONTS is the bank report's count for the programs as they are: a change to
    kernels/cuda/chunk/ that moves shared-memory traffic must regenerate it (its comment says how)."""
    out = subprocess.run([REPORT, "--python", "--m", str(M), "--d", str(D), "--diagonal", diagonal],
                         capture_output=True, text=True, check=True).stdout
    key, counts = eval("{" + out.strip().rstrip(",") + "}").popitem()  # one dict entry, as the table has it
    assert key == (M, D, diagonal)
    assert counts == bench_gpu.SMEM_WAVEFRONTS[key]


def test_shared_memory_model_scales_with_the_grid():
    one = bench_gpu.chunk_kernel_smem(1, 64, 128, 64)
    per_unit = bench_gpu.SMEM_WAVEFRONTS[(64, 128, "factored")]
    # one chunk of one sequence: a CTA for each chunk kernel, two row tiles for the per-tile ones
    assert one["grad_pass"] == per_unit["grad_pass"] and one["output_pass"] == per_unit["output_pass"]
    assert one["state_pass"] == 2 * per_unit["state_pass"] and one["forward_pass"] == 0
    big = bench_gpu.chunk_kernel_smem(256, 8192, 128, 64, forward="fused")
    assert big["grad_pass"] == 256 * 128 * per_unit["grad_pass"] and big["state_pass"] == big["output_pass"] == 0
    assert big["forward_pass"] == 256 * 128 * 2 * per_unit["forward_pass"]
    assert bench_gpu.chunk_kernel_smem(64, 2048, 128, 128) is None  # M = 128: not in the table
    assert bench_gpu.chunk_kernel_smem(1, 64, 128, 64, diagonal="auto") == one
