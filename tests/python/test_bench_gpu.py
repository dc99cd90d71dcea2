"""benchmarks/bench_gpu.py where there is no GPU (CI): its HBM traffic model of the chunk path, the
mapping of profiler kernel names to the chunk passes, and its refusal to time anything without CUDA.
The timings themselves need the GPU machine (tests/gpu/run_all.sh)."""
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

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
    # The compute model: each forward form with each form of the diagonal blocks, with each set of gates.
    compute = {(cells(line)[4], cells(line)[5]): cells(line)[-1] for line in lines
               if len(cells(line)) == 13 and cells(line)[6] == "N(2, 1)"}
    ugi = {(cells(line)[4], cells(line)[5]): cells(line)[-1] for line in lines
           if len(cells(line)) == 13 and cells(line)[6] == "ugi"}
    # (Shared memory binds every kernel at this size, so the bounds follow SMEM_WAVEFRONTS.)
    # (The chained products took a whole chunk's y off shared memory: factored and chunk 24/29% split and 24/30%
    # fused before them; the chunk form's dV and dK chains its gradient's transposed products: 31/32% before them;
    # session 22's Q̃ and K̃ once per chunk, the gate sums on four columns a lane, and the log gates summed as
    # they are computed (one phase, no fp32 tile stored and read back): factored 25/25%, elementwise 14/14%,
    # tensor 19/20% and chunk 33/34% before them; session 24's paired operand scaling (Q̃ with K̃, dỸ with Ṽ on one
    # load of their gates): fused factored 26%, tensor 20%, chunk 38% before it; and split chunk 36% before the first
    # tile's zeros of DQ and DK moved ahead of the odd count of wide words, split tensor 20% before the boundary
    # terms' rows read their quads in alternate orders; session 25's staging order, start-state store and gate sums
    # that write as they read: fused chunk 39% and split factored 27% before them; session 26's state update that
    # decays the state in its epilogue and writes the next chunk's start state from there (the serial passes read
    # and write their state once a chunk): split factored 28%, elementwise 15%, chunk 37%, fused factored 27%,
    # elementwise 14%, tensor 21% and chunk 40% before it; and its chains with one warp a row block (P computed
    # once, a tile at a time in registers): split chunk 39% and fused chunk 43% before them; session 27's update
    # from the operands referred to the chunk's start (the fused forward's whole chunks hand over K̃ and Ṽ, no
    # scaling phase of its own): fused factored 29% and chunk 46% before it.)
    assert compute == {("split", "factored"): "29%", ("split", "elementwise"): "16%", ("split", "tensor"): "21%",
                       ("split", "chunk"): "42%", ("fused", "factored"): "30%", ("fused", "elementwise"): "15%",
                       ("fused", "tensor"): "22%", ("fused", "chunk"): "49%"}, r.stdout
    # A freshly swapped model's gates take no chunk whole: the chunk form is the tensor form's, and the factored
    # form, whose wide columns go per pair beside its factored narrow ones, falls below both (session 28). (Before
    # session 29 skewed the diagonal blocks Pd and Rd, whose per-pair reads met on one bank, and started the wide
    # columns' per-pair sums where few columns are wide on two of them: split factored 17%, tensor and chunk 18%;
    # fused factored 17%, tensor and chunk 18%; and before the wide columns' lanes of the factored sums read Pd and
    # Rd with their warps: factored 18%, both forward forms.)
    assert ugi == {("split", "factored"): "19%", ("split", "elementwise"): "16%", ("split", "tensor"): "19%",
                   ("split", "chunk"): "19%", ("fused", "factored"): "19%", ("fused", "elementwise"): "15%",
                   ("fused", "tensor"): "19%", ("fused", "chunk"): "19%"}, r.stdout


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


def test_mufu_counts_of_the_chunk_form_are_the_programs_by_hand():
    """MUFU_OPS, counted by running the programs, against a count by hand from kernels/cuda/chunk/ (bf16, C = 64,
    M = 64, D = 128: two row tiles of R = 64; every chunk whole, its products chained). Log gates one each
    (log1pf is a polynomial), σ(−x) two (an exponential and a reciprocal), each decay one.
    grad_pass per chunk: the log gates of the key side 4096 and of each tile's rows 2·4096; the scaling phase of
    the first tile Q̃, K̃, dỸ, Ṽ and dŜ (5·4096), of the second dỸ, Ṽ and dŜ only (Q̃ and K̃ kept); per tile the
    four chains' decays (y, dv, dq, dk) 4·4096 and σ(−z) 2·4096; σ(−f) 2·4096 once. output_pass: the log gates
    4096 + 2·4096, Q̃ and K̃ once 2·4096, per tile Ṽ and y's decays 2·4096. state_pass per chunk and tile: the
    log gates 2·4096, the scaled operands 2·4096 and the state's decay (one exponential a row and one a column of a
    lane's 16×16 tile: 6 for its 8 elements) 3072; dstate_pass the same."""
    n = 4096
    grad = n + 2 * n + 5 * n + 3 * n + 2 * (4 * n + 2 * n) + 2 * n
    counts = bench_gpu.MUFU_OPS[(64, 128, "chunk")]
    assert counts["grad_pass"] == grad == 102400
    assert counts["output_pass"] == n + 2 * n + 2 * n + 2 * (2 * n)
    assert counts["state_pass"] == counts["dstate_pass"] == 4 * n + 3 * n // 4


@pytest.mark.parametrize("M, D", [(M, D) for M in (32, 64) for D in (64, 128)])
def test_mufu_counts_follow_the_forms_of_the_diagonal_blocks(M, D):
    """The scans' counts do not depend on the diagonal blocks; the elementwise form (one exponential per pair) is
    the dearest and the chunk form (whole chunks, nothing per element) the cheapest in every pass with
    diagonal blocks; the fused forward takes the log gates once, where the split pair takes them in both of its
    passes, and its state update scales no operands (a whole chunk's K̃ and Ṽ, which state_pass scales for
    itself), but (one row tile per CTA) it takes the key side's gates and Q̃, K̃ in every tile."""
    forms = {g: bench_gpu.MUFU_OPS[(M, D, g)] for g in bench_gpu.DIAGONALS}
    assert len({(c["state_pass"], c["dstate_pass"]) for c in forms.values()}) == 1
    for kernel in ("output_pass", "forward_pass", "grad_pass"):
        assert forms["elementwise"][kernel] > forms["tensor"][kernel] > forms["chunk"][kernel]
        assert forms["elementwise"][kernel] > forms["factored"][kernel] > forms["chunk"][kernel]
    C, R, tiles, c = bench_gpu.compiled_chunk(M), 64, D // 64, forms["chunk"]
    assert tiles * (c["forward_pass"] + 2 * C * (M + R)) == (
        tiles * c["state_pass"] + c["output_pass"] + (tiles - 1) * 3 * C * M)


def test_chunk_kernel_counts_scale_with_the_grid():
    """chunk_kernel_smem and chunk_kernel_mufu: a table's per-chunk count times the CTAs' units of work (chunks for
    grad_pass and output_pass, chunks × row tiles for the others), the forward form's kernels only."""
    for table, count in ((bench_gpu.SMEM_WAVEFRONTS, bench_gpu.chunk_kernel_smem),
                         (bench_gpu.MUFU_OPS, bench_gpu.chunk_kernel_mufu)):
        one = count(1, 64, 128, 64)
        per_unit = table[(64, 128, "factored")]
        # one chunk of one sequence: a CTA for each chunk kernel, two row tiles for the per-tile ones
        assert one["grad_pass"] == per_unit["grad_pass"] and one["output_pass"] == per_unit["output_pass"]
        assert one["state_pass"] == 2 * per_unit["state_pass"] and one["forward_pass"] == 0
        big = count(256, 8192, 128, 64, forward="fused")
        assert big["grad_pass"] == 256 * 128 * per_unit["grad_pass"] and big["state_pass"] == big["output_pass"] == 0
        assert big["forward_pass"] == 256 * 128 * 2 * per_unit["forward_pass"]
        assert count(64, 2048, 128, 128) is None  # M = 128: not in the table
        assert count(1, 64, 128, 64, diagonal="auto") == one
    ugi = bench_gpu.chunk_kernel_smem(1, 64, 128, 64, gates="ugi")
    assert ugi["grad_pass"] == bench_gpu.SMEM_WAVEFRONTS_UGI[(64, 128, "factored")]["grad_pass"]
    assert bench_gpu.chunk_kernel_mufu(1, 64, 128, 64, gates="ugi")["state_pass"] == (
        2 * bench_gpu.MUFU_OPS_UGI[(64, 128, "factored")]["state_pass"])
    with pytest.raises(KeyError):
        bench_gpu.chunk_kernel_smem(1, 64, 128, 64, gates="uniform")


def test_inputs_with_a_swapped_models_gates():
    """make_inputs' "ugi" gates (chunk-ugi's): per head, each channel's logits centre on its own Uniform Gate
    Initialization bias, so that some channel of every 64-token chunk decays by more than e^-40 over it (no chunk
    whole), where the N(2, 1) logits leave every chunk whole."""
    from decayfw.nn import uniform_gate_bias
    x, B, H = bench_gpu.make_inputs(32, 4096, 64, 32, dtype=torch.float32, gates="ugi", device="cpu")
    assert (B, H) == (2, 16) and x["z"].shape == (2, 4096, 16, 64) and x["f"].shape == (2, 4096, 16, 32)
    g = torch.Generator().manual_seed(0)
    z_bias = torch.stack([uniform_gate_bias(64, g) for _ in range(16)])
    assert torch.allclose(x["z"].mean(dim=(0, 1)), z_bias, atol=0.1)  # 8192 draws of N(0, 1) a channel
    assert len({tuple(h.tolist()) for h in z_bias}) == 16  # a draw of its own for each head

    def whole_share(x):
        spans = -F.logsigmoid(x.float()).reshape(2, 64, 64, 16, -1).sum(2)  # [B, chunk, token in it, H, X] summed
        return (spans.amax(-1) <= 40).float().mean().item()

    assert whole_share(x["z"]) == whole_share(x["f"]) == 0.0
    normal, _, _ = bench_gpu.make_inputs(32, 4096, 64, 32, dtype=torch.float32, device="cpu")
    assert whole_share(normal["z"]) == whole_share(normal["f"]) == 1.0
    with pytest.raises(ValueError, match="gates"):
        bench_gpu.make_inputs(16, 64, 64, 32, gates="uniform", device="cpu")


@pytest.mark.parametrize("M, D", [(M, D) for M in (32, 64) for D in (64, 128)])
def test_counts_with_a_swapped_models_gates(M, D):
    """SMEM_WAVEFRONTS_UGI and MUFU_OPS_UGI against the N(2, 1) tables: the elementwise form takes every column per
    pair and no chunk whole with any gates, so its counts are the same; the others pay for the wide columns (and
    the factored and chunk forms for whole chunks no longer taken), so no count falls; and with no chunk whole the
    chunk form runs the tensor form's programs, its gate sums setting the chunk's bits beside them (under 1% more)."""
    for normal, ugi in ((bench_gpu.SMEM_WAVEFRONTS, bench_gpu.SMEM_WAVEFRONTS_UGI),
                        (bench_gpu.MUFU_OPS, bench_gpu.MUFU_OPS_UGI)):
        assert set(normal) == set(ugi)
        assert ugi[(M, D, "elementwise")] == normal[(M, D, "elementwise")]
        for form in ("factored", "tensor", "chunk"):
            assert all(ugi[(M, D, form)][k] >= normal[(M, D, form)][k] for k in bench_gpu.CHUNK_KERNELS)
        for kernel in ("forward_pass", "output_pass", "grad_pass"):
            assert ugi[(M, D, "tensor")][kernel] <= ugi[(M, D, "chunk")][kernel] <= 1.01 * ugi[(M, D, "tensor")][kernel]
            assert ugi[(M, D, "factored")][kernel] > normal[(M, D, "factored")][kernel]


REPORT = os.path.join(ROOT, "build", "benchmarks", "smem_bank_report")


@pytest.mark.skipif(not os.access(REPORT, os.X_OK), reason="build/benchmarks/smem_bank_report is not built")
@pytest.mark.parametrize("M, D, diagonal", [(64, 128, "factored"), (32, 64, "tensor"), (64, 64, "elementwise"),
                                              (32, 128, "chunk")])
@pytest.mark.parametrize("flag, table", [("--python", "SMEM_WAVEFRONTS"), ("--python-mufu", "MUFU_OPS")])
@pytest.mark.parametrize("gates", ["normal", "ugi"])
def test_counted_tables_are_what_the_programs_do_now(M, D, diagonal, flag, table, gates):
    """SMEM_WAVEFRONTS and MUFU_OPS (and their _UGI tables, with a freshly swapped model's gates) are the bank
    report's counts for the programs as they are: a change to kernels/cuda/chunk/ that moves shared-memory traffic
    or special functions must regenerate them (their comment says how)."""
    out = subprocess.run([REPORT, flag, "--m", str(M), "--d", str(D), "--diagonal", diagonal, "--gates", gates],
                         capture_output=True, text=True, check=True).stdout
    key, counts = eval("{" + out.strip().rstrip(",") + "}").popitem()  # one dict entry, as the table has it
    assert key == (M, D, diagonal)
    assert counts == getattr(bench_gpu, table + ("_UGI" if gates == "ugi" else ""))[key]


def _markdown_rows(text: str, header_start: str):
    """The rows (lists of cells) of the markdown table whose header starts with header_start."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


@pytest.mark.skipif(not os.access(REPORT, os.X_OK), reason="build/benchmarks/smem_bank_report is not built")
def test_the_phase_table_splits_each_kernels_wavefronts():
    """--by-phase splits every kernel's wavefronts and conflict-free count over its phases: the parts add up to the
    kernel table's totals (within the per-row rounding), the shares to 100%, and the phases are named functions."""
    out = subprocess.run([REPORT, "--m", "32", "--d", "64", "--t", "80", "--gates", "ugi", "--top", "0",
                          "--by-phase"], capture_output=True, text=True, check=True).stdout
    totals = {row[0]: (float(row[2]), float(row[3])) for row in _markdown_rows(out, "| kernel | instructions |")}
    phases = _markdown_rows(out, "| kernel | phase |")
    assert set(totals) == {row[0] for row in phases} == {"state_pass", "output_pass", "dstate_pass", "grad_pass"}
    for kernel, (wavefronts, conflict_free) in totals.items():
        rows = [row for row in phases if row[0] == kernel]
        assert len({row[1] for row in rows}) == len(rows) > 1
        assert all(row[1] and ":" not in row[1] for row in rows)  # one row a phase, its lines together
        assert abs(sum(float(row[2]) for row in rows) - wavefronts) <= len(rows)
        assert abs(sum(float(row[4]) for row in rows) - conflict_free) <= len(rows)
        assert abs(sum(float(row[3].rstrip("%")) for row in rows) - 100.0) <= 0.1 * len(rows)
        shown = [float(row[2]) for row in rows]
        assert shown == sorted(shown, reverse=True)
    grad = {row[1]: row for row in phases if row[0] == "grad_pass"}
    assert float(grad["grad_rows"][5]) >= 1.0
