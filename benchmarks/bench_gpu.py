"""GPU benchmark of the decay rule, one run, side by side (needs CUDA; the GPU machine, H100 or H200):

- ``chunk`` and ``recurrent``: this project's CUDA op (torch.ops.decayfw.*), bf16 inputs, fp32 state,
  forced onto its chunkwise tensor-core path and its recurrent path (DECAYFW_CUDA_PATH); ``chunk``
  takes the forward form the op chooses itself (DECAYFW_CHUNK_FORWARD=auto), ``chunk-fused`` and
  ``chunk-split`` force one (the same arithmetic; the split pair spreads y over chunks, the
  fused pass reads the inputs once), so the table shows whether auto chose well;
  ``chunk-recompute`` (forward+backward only): the chunk path with ``save_chunk_states=False``, whose
  backward recomputes the chunk states instead of reusing the forward's; ``chunk-tensor``: the chunk
  path with its 16×16 diagonal blocks on tensor cores where the gates allow (DECAYFW_CHUNK_DIAGONAL=
  tensor; here everywhere: the inputs' gate logits are N(2, 1)), and ``chunk-elementwise`` with every
  diagonal term per pair of rows in fp32 (the default before the factored form), where ``chunk`` takes
  the default, the factored form (fp32 operands scaled once per row); ``chunk-whole``: the chunk form
  (DECAYFW_CHUNK_DIAGONAL=chunk), every chunk of these gates taken whole by one product over the chunk;
  ``chunk-ugi``: ``chunk`` with a freshly swapped model's gate logits (each channel's Uniform Gate
  Initialization bias, decayfw.nn.uniform_gate_bias, plus N(0, 1)), whose fast channels are wide and leave no
  chunk whole: what fine-tuning starts from, where the N(2, 1) columns are the kernels' best case;
- ``naive``: a per-token PyTorch loop (autograd for the backward);
- ``t2fw``: T2FW's algorithm (Mao 2022's released kernels) re-implemented in Triton: one program
  per state tile running serially over time, every state S_t stored (fp16) for the backward,
  outputs and gradients by einsums over the stored histories;
- ``fla``: flash-linear-attention's ``fused_recurrent_gla`` with both gates, when installed;
- ``sdpa``: ``F.scaled_dot_product_attention`` (causal, FlashAttention backend), same N, T, D.

Forward, forward+backward and decode; median of ``--reps`` timed runs after warm-up (CUDA events)
and peak memory. Prints Markdown tables; ``--json PATH`` also writes the raw rows.

Order, so that a run cut short still has what matters most: first the chunk path's forward+backward
split by kernel (torch.profiler's CUDA activity): how much of the time the serial passes
(``state_pass``, ``dstate_pass``) take against the parallel ones (``output_pass``, ``grad_pass``),
which says where the first optimisation goes; then the decode step (seconds); then the side-by-side
sweep, the issue's target lengths first (T ≥ 2048, then shorter; ``sweep_order``). ``--time-budget S``
starts no sweep size after S seconds from the start and still prints every table, naming the sizes
it left out: the GPU machine's calls are short (tests/gpu/run_all.sh gives it what its deadline allows).
"""
import argparse
import itertools
import json
import os
import statistics
import sys
import time

import torch
import torch.nn.functional as F

import decayfw
from decayfw.nn import uniform_gate_bias

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover
    triton = None

try:
    from fla.ops.gla import fused_recurrent_gla
except ImportError:
    fused_recurrent_gla = None


# -- T2FW's algorithm in Triton ------------------------------------------------------------------------

if triton is not None:
    @triton.jit
    def _t2fw_fwd(a_ptr, b_ptr, v_ptr, k_ptr, st_ptr, T, D: tl.constexpr, M: tl.constexpr,
                  BD: tl.constexpr, BM: tl.constexpr):
        n = tl.program_id(0).to(tl.int64)
        d = tl.program_id(1) * BD + tl.arange(0, BD)
        m = tl.program_id(2) * BM + tl.arange(0, BM)
        S = tl.zeros((BD, BM), dtype=tl.float32)
        for t in range(T):
            base = n * T + t
            a = tl.load(a_ptr + base * D + d).to(tl.float32)
            v = tl.load(v_ptr + base * D + d).to(tl.float32)
            b = tl.load(b_ptr + base * M + m).to(tl.float32)
            k = tl.load(k_ptr + base * M + m).to(tl.float32)
            S = (S * a[:, None] * b[None, :] + v[:, None] * k[None, :]).to(tl.float16).to(tl.float32)
            tl.store(st_ptr + (base * D + d[:, None]) * M + m[None, :], S.to(tl.float16))

    @triton.jit
    def _t2fw_bwd(a_ptr, b_ptr, dy_ptr, q_ptr, sg_ptr, T, D: tl.constexpr, M: tl.constexpr,
                  BD: tl.constexpr, BM: tl.constexpr):
        n = tl.program_id(0).to(tl.int64)
        d = tl.program_id(1) * BD + tl.arange(0, BD)
        m = tl.program_id(2) * BM + tl.arange(0, BM)
        G = tl.zeros((BD, BM), dtype=tl.float32)
        for i in range(T):
            t = T - 1 - i
            base = n * T + t
            dy = tl.load(dy_ptr + base * D + d).to(tl.float32)
            q = tl.load(q_ptr + base * M + m).to(tl.float32)
            G = (G + dy[:, None] * q[None, :]).to(tl.float16).to(tl.float32)
            tl.store(sg_ptr + (base * D + d[:, None]) * M + m[None, :], G.to(tl.float16))
            a = tl.load(a_ptr + base * D + d).to(tl.float32)
            b = tl.load(b_ptr + base * M + m).to(tl.float32)
            G = G * a[:, None] * b[None, :]


class T2FWFunction(torch.autograd.Function):
    """T2FW's interface: pre-sigmoided gates a [N,T,D], b [N,T,M]; everything fp16."""

    @staticmethod
    def forward(ctx, q, k, v, a, b):
        N, T, D = v.shape
        M = q.shape[-1]
        st = torch.empty(N, T, D, M, device=q.device, dtype=torch.float16)
        BD, BM = min(16, D), min(64, M)
        _t2fw_fwd[(N, D // BD, M // BM)](a, b, v, k, st, T, D, M, BD, BM)
        y = torch.einsum("ntdm,ntm->ntd", st, q)
        ctx.save_for_backward(q, k, v, a, b, st)
        return y

    @staticmethod
    def backward(ctx, dy):
        q, k, v, a, b, st = ctx.saved_tensors
        N, T, D = v.shape
        M = q.shape[-1]
        dy = dy.contiguous()
        sg = torch.empty_like(st)
        BD, BM = min(16, D), min(64, M)
        _t2fw_bwd[(N, D // BD, M // BM)](a, b, dy, q, sg, T, D, M, BD, BM)
        dq = torch.einsum("ntd,ntdm->ntm", dy, st)
        dv = torch.einsum("ntdm,ntm->ntd", sg, k)
        dk = torch.einsum("ntdm,ntd->ntm", sg, v)
        prev = torch.cat([torch.zeros_like(st[:, :1]), st[:, :-1]], 1)
        sg.mul_(prev)
        da = torch.einsum("ntdm,ntm->ntd", sg, b)
        db = torch.einsum("ntdm,ntd->ntm", sg, a)
        return dq, dk, dv, da, db


# -- candidates ----------------------------------------------------------------------------------------

def make_inputs(N, T, D, M, dtype=torch.bfloat16, requires_grad=False, gates="normal", device="cuda"):
    """The benchmark's inputs. Gate logits: "normal", N(2, 1) (every column narrow, every chunk whole: the chunk
    kernels' best case); "ugi", a freshly swapped model's, each channel's Uniform Gate Initialization bias
    (decayfw.nn.uniform_gate_bias, per head) plus N(0, 1) (fast channels wide, no chunk whole)."""
    B, H = N // 16 if N >= 16 else 1, min(16, N)
    g = torch.Generator(device=device).manual_seed(0)
    r = lambda *s: torch.randn(*s, device=device, generator=g)
    if gates == "ugi":
        cpu = torch.Generator().manual_seed(0)
        bias = lambda X: torch.stack([uniform_gate_bias(X, cpu) for _ in range(H)]).to(device)  # [H, X]
        z_mean, f_mean = bias(D), bias(M)
    elif gates == "normal":
        z_mean = f_mean = 2.0
    else:
        raise ValueError(f"make_inputs: gates is 'normal' or 'ugi', got {gates!r}")
    x = {"q": r(B, T, H, M) / M ** 0.5, "k": r(B, T, H, M) / M ** 0.5, "v": r(B, T, H, D),
         "z": r(B, T, H, D) + z_mean, "f": r(B, T, H, M) + f_mean}
    x = {n: t.to(dtype).requires_grad_(requires_grad) for n, t in x.items()}
    return x, B, H


def run_decayfw(x, backward, path, save_chunk_states=True, forward="auto", threads="auto", diagonal="auto",
                chain="auto", grad_phases="auto"):
    os.environ["DECAYFW_CUDA_PATH"] = path
    os.environ["DECAYFW_CHUNK_FORWARD"] = forward
    os.environ["DECAYFW_CHUNK_THREADS"] = threads
    os.environ["DECAYFW_CHUNK_DIAGONAL"] = diagonal
    os.environ["DECAYFW_CHUNK_CHAIN"] = chain
    os.environ["DECAYFW_CHUNK_GRAD_PHASES"] = grad_phases
    y = decayfw.decay_fast_weights(x["q"], x["k"], x["v"], x["z"], x["f"], save_chunk_states=save_chunk_states)
    if backward:
        y.backward(torch.ones_like(y))


def run_naive(x, backward):
    q, k, v, z, f = (x[n] for n in "qkvzf")
    B, T, H, M = q.shape
    D = v.shape[-1]
    S = torch.zeros(B, H, D, M, device="cuda", dtype=torch.float32)
    a, b = torch.sigmoid(z.float()), torch.sigmoid(f.float())
    ys = []
    for t in range(T):
        S = a[:, t, :, :, None] * b[:, t, :, None, :] * S + v[:, t].float()[..., None] * k[:, t].float()[..., None, :]
        ys.append((S @ q[:, t].float()[..., None])[..., 0])
    y = torch.stack(ys, 1)
    if backward:
        y.backward(torch.ones_like(y))


def to_t2fw(x):
    q, k, v, z, f = (x[n] for n in "qkvzf")
    B, T, H, M = q.shape
    flat = lambda t: t.detach().permute(0, 2, 1, 3).reshape(B * H, T, -1).to(torch.float16).contiguous()
    out = [flat(q), flat(k), flat(v), torch.sigmoid(flat(z).float()).half(), torch.sigmoid(flat(f).float()).half()]
    for t in out:
        t.requires_grad_(x["q"].requires_grad)
    return out


def run_t2fw(args, backward):
    y = T2FWFunction.apply(*args)
    if backward:
        y.backward(torch.ones_like(y))


def run_fla(fla_op, x, backward):
    y, _ = fla_op(x["q"], x["k"], x["v"], gk=F.logsigmoid(x["f"].float()).to(x["f"].dtype),
                               gv=F.logsigmoid(x["z"].float()).to(x["z"].dtype), scale=1.0)
    if backward:
        y.backward(torch.ones_like(y))


def run_sdpa(qkv, backward):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        y = F.scaled_dot_product_attention(*qkv, is_causal=True)
    if backward:
        y.backward(torch.ones_like(y))


def bench(fn, reps, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    times = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e))
    return statistics.median(times), (torch.cuda.max_memory_allocated() - base) / 2**20


def copy_bandwidth():
    x = torch.empty(2**28, device="cuda", dtype=torch.float32)
    y = torch.empty_like(x)
    ms, _ = bench(lambda: y.copy_(x), 20)
    return 2 * x.numel() * 4 / (ms / 1e3)


def io_floor_bytes(N, T, D, M, backward, elem=2):
    fwd = (3 * M + 2 * D + D) * elem          # read q,k,f,v,z; write y
    bwd = (3 * M + 2 * D + D + 3 * M + 2 * D) * elem  # read inputs and dy; write all gradients
    return N * T * (fwd + (bwd if backward else 0))


# The chunk path's kernels, by the names of their templates (kernels/cuda/decay_chunk_kernels.cuh), in
# launch order; a forward runs state_pass and output_pass (split) or forward_pass (fused).
CHUNK_KERNELS = ("state_pass", "output_pass", "forward_pass", "dstate_pass", "grad_pass")
CHUNK_FORWARDS = ("split", "fused")
# Threads per CTA of the chunk kernels (DECAYFW_CHUNK_THREADS; 512 by default): the breakdown times both,
# the same arithmetic bit for bit.
CHUNK_THREADS = ("512", "256")
# The launch variants the per-kernel breakdown times, (threads, diagonal blocks, chained products, grad_pass's
# phases): both thread counts with the default diagonal form (factored), the per-pair, tensor-core and chunk forms
# (DECAYFW_CHUNK_DIAGONAL=elementwise, tensor, chunk) at the default count, the factored and chunk forms with the
# whole chunks' products through shared memory (DECAYFW_CHUNK_CHAIN=off), and the chunk form with grad_pass's four
# chains in one phase at 256 threads (DECAYFW_CHUNK_GRAD_PHASES=one), whose cost or gain in each kernel then reads
# directly; all with the benchmark's N(2, 1) gates, then the default and tensor-core forms with a freshly swapped
# model's (make_inputs' "ugi": no chunk whole, fast channels wide), which say what real gates cost each kernel and
# which form serves them faster.
BREAKDOWN_VARIANTS = (tuple((t, "auto", "auto", "auto", "normal") for t in CHUNK_THREADS)
                      + tuple((CHUNK_THREADS[0], d, "auto", "auto", "normal") for d in ("elementwise", "tensor", "chunk"))
                      + tuple((CHUNK_THREADS[0], d, "off", "auto", "normal") for d in ("auto", "chunk"))
                      + ((CHUNK_THREADS[0], "chunk", "auto", "one", "normal"),)
                      + tuple((CHUNK_THREADS[0], d, "auto", "auto", "ugi") for d in ("auto", "tensor")))


def kernel_of(name):
    for k in sorted(CHUNK_KERNELS, key=len, reverse=True):  # dstate_pass before state_pass, which it contains
        if k + "_kernel" in name:
            return k
    return "other"


def kernel_breakdown(N, T, D, M, forward, threads="auto", reps=5, diagonal="auto", chain="auto", grad_phases="auto",
                     gates="normal"):
    """µs per forward+backward call of the chunk path, per kernel (bf16), from CUDA kernel events."""
    from torch.profiler import ProfilerActivity, profile
    x, _, _ = make_inputs(N, T, D, M, requires_grad=True, gates=gates)
    call = lambda: run_decayfw(x, True, "chunk", forward=forward, threads=threads, diagonal=diagonal, chain=chain,
                               grad_phases=grad_phases)
    for _ in range(2):
        call()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(reps):
            call()
        torch.cuda.synchronize()
    us = dict.fromkeys(CHUNK_KERNELS + ("other",), 0.0)
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA:
            us[kernel_of(ev.name)] += ev.time_range.elapsed_us() / reps
    return us


def compiled_chunk(M):
    """Tokens per chunk of the 16-bit configurations (kernels/cuda/decay_chunk_configs.h), for the model
    without a GPU; on a GPU, torch.ops.decayfw.decay_chunk_size says (tests/gpu checks the two agree)."""
    return 64 if M <= 64 else 32


def chunk_kernel_bytes(N, T, D, M, elem=2, reuse_states=True, C=None, forward="split"):
    """HBM bytes of each chunk-path kernel in one forward+backward call, read off
    kernels/cuda/chunk/. Each distinct byte a kernel reads or writes counts once (the
    row tiles' repeated reads of q, k, f and grad_pass's second reads are taken to hit L2), so this is a
    lower bound. fp32 states of D×M per chunk; their gradients in the input type (ChunkArgs::dstates).
    reuse_states: the backward reads the forward's chunk states (decay_fast_weights' default); False: it
    recomputes them with a second state_pass. forward: "split" (state_pass, then output_pass) or "fused"
    (forward_pass alone: the inputs read once; the states written only when the backward reuses them)."""
    C = C or compiled_chunk(M)
    P, chunks, S, dS, E = N * T, -(-T // C), D * M * 4, D * M * elem, elem
    once = {
        "state_pass": P * (2 * M + 2 * D) * E + N * (chunks + 1) * S,             # k, f, v, z; every chunk's start state
        "output_pass": P * (3 * M + 2 * D) * E + N * chunks * S + P * D * E,      # q, k, f, v, z, states; y
        "dstate_pass": P * (2 * M + 2 * D) * E + N * chunks * dS,                 # q, f, dy, z; the state gradients
        "grad_pass": P * (3 * M + 3 * D) * E + N * ((chunks + 1) * S + chunks * dS) + P * (3 * M + 2 * D) * E,  # all; grads
    }
    once["forward_pass"] = 0
    if forward == "fused":
        once["forward_pass"] = P * (3 * M + 2 * D) * E + P * D * E + (N * (chunks + 1) * S if reuse_states else 0)
        once["output_pass"] = 0
        if reuse_states:
            once["state_pass"] = 0  # otherwise it is the backward's: counted once below
    elif not reuse_states:
        once["state_pass"] *= 2  # forward, and recomputed by the backward
    return once


# Shared-memory wavefronts and special-function (MUFU) operations of each chunk kernel per chunk (grad_pass,
# output_pass: a CTA each) or per chunk and row tile (the others, whose CTAs walk a row tile's chunks) (bf16;
# forward_pass from the fused forward, the others from the split one; gate logits N(2, 1), as the benchmark's:
# no wide column, every chunk whole in the factored and chunk forms), counted on the CPU by
# benchmarks/smem_bank_report, which runs the programs through HostCta with a SmemTrace
# (kernels/cuda/cta/smem_trace.h). Regenerate both after a change to the programs (tests/python/test_bench_gpu.py
# checks them):
#   for M in 32 64; do for D in 64 128; do for g in factored elementwise tensor chunk; do
#     build/benchmarks/smem_bank_report --python --m $M --d $D --diagonal $g; done; done; done
# (--python-mufu in place of --python for MUFU_OPS).
#
# Wavefronts: every vector and scalar access of the programs as the warps would issue them, served by the bank
# model (a 16-byte access in quarter warps, an 8-byte one in half warps, twice the lanes for a load whose
# neighbouring lanes share addresses), and the tensor-core fragments as the code nvcc emits reads and writes them.
# A Hopper SM serves one 128-byte wavefront a clock: at 132 SMs and 1.98 GHz (H100/H200 boost), a floor beside
# MUFU and bytes.
SMEM_WAVEFRONTS_PER_SECOND = 132 * 1.98e9
SMEM_WAVEFRONTS = {
    (32, 64, "factored"): {"dstate_pass": 1424, "forward_pass": 3769, "grad_pass": 10444, "output_pass": 3300, "state_pass": 1427},
    (32, 64, "elementwise"): {"dstate_pass": 1424, "forward_pass": 8566, "grad_pass": 22207, "output_pass": 7526, "state_pass": 1616},
    (32, 64, "tensor"): {"dstate_pass": 1424, "forward_pass": 5466, "grad_pass": 14809, "output_pass": 4426, "state_pass": 1616},
    (32, 64, "chunk"): {"dstate_pass": 1424, "forward_pass": 2361, "grad_pass": 5456, "output_pass": 1892, "state_pass": 1427},
    (32, 128, "factored"): {"dstate_pass": 1424, "forward_pass": 3769, "grad_pass": 19400, "output_pass": 5576, "state_pass": 1427},
    (32, 128, "elementwise"): {"dstate_pass": 1424, "forward_pass": 8566, "grad_pass": 40798, "output_pass": 12027, "state_pass": 1616},
    (32, 128, "tensor"): {"dstate_pass": 1424, "forward_pass": 5466, "grad_pass": 28666, "output_pass": 8491, "state_pass": 1616},
    (32, 128, "chunk"): {"dstate_pass": 1424, "forward_pass": 2361, "grad_pass": 9904, "output_pass": 3368, "state_pass": 1427},
    (64, 64, "factored"): {"dstate_pass": 2208, "forward_pass": 5273, "grad_pass": 14373, "output_pass": 4341, "state_pass": 2211},
    (64, 64, "elementwise"): {"dstate_pass": 2208, "forward_pass": 13330, "grad_pass": 30234, "output_pass": 11634, "state_pass": 2464},
    (64, 64, "tensor"): {"dstate_pass": 2208, "forward_pass": 7630, "grad_pass": 19714, "output_pass": 5934, "state_pass": 2464},
    (64, 64, "chunk"): {"dstate_pass": 2208, "forward_pass": 3513, "grad_pass": 7861, "output_pass": 2581, "state_pass": 2211},
    (64, 128, "factored"): {"dstate_pass": 2208, "forward_pass": 5273, "grad_pass": 26187, "output_pass": 6857, "state_pass": 2211},
    (64, 128, "elementwise"): {"dstate_pass": 2208, "forward_pass": 13330, "grad_pass": 53337, "output_pass": 17127, "state_pass": 2464},
    (64, 128, "tensor"): {"dstate_pass": 2208, "forward_pass": 7630, "grad_pass": 37833, "output_pass": 11263, "state_pass": 2464},
    (64, 128, "chunk"): {"dstate_pass": 2208, "forward_pass": 3513, "grad_pass": 13899, "output_pass": 4329, "state_pass": 2211},
}

# MUFU operations per lane, as the programs make them (kernels/cuda/cta/cta_common.h, count_special_functions:
# each decay e^x one MUFU.EX2, a log gate log σ(x) one (its log1pf is a polynomial on the FMA pipe), σ(−x) an EX2
# and the division's RCP, as nvcc 13 compiles them for sm_90). A Hopper SM retires 16 a clock, so 4.2e12 a second
# at 132 SMs and 1.98 GHz: the second floor beside the bytes.
MUFU_OPS_PER_SECOND = 132 * 16 * 1.98e9
MUFU_OPS = {
    (32, 64, "factored"): {"dstate_pass": 13824, "forward_pass": 31744, "grad_pass": 79104, "output_pass": 30208, "state_pass": 13824},
    (32, 64, "elementwise"): {"dstate_pass": 13824, "forward_pass": 70144, "grad_pass": 161280, "output_pass": 62464, "state_pass": 13824},
    (32, 64, "tensor"): {"dstate_pass": 13824, "forward_pass": 41472, "grad_pass": 98304, "output_pass": 33792, "state_pass": 13824},
    (32, 64, "chunk"): {"dstate_pass": 13824, "forward_pass": 19968, "grad_pass": 45056, "output_pass": 18432, "state_pass": 13824},
    (32, 128, "factored"): {"dstate_pass": 13824, "forward_pass": 31744, "grad_pass": 145920, "output_pass": 50176, "state_pass": 13824},
    (32, 128, "elementwise"): {"dstate_pass": 13824, "forward_pass": 70144, "grad_pass": 299008, "output_pass": 105472, "state_pass": 13824},
    (32, 128, "tensor"): {"dstate_pass": 13824, "forward_pass": 41472, "grad_pass": 190464, "output_pass": 65536, "state_pass": 13824},
    (32, 128, "chunk"): {"dstate_pass": 13824, "forward_pass": 19968, "grad_pass": 79872, "output_pass": 30720, "state_pass": 13824},
    (64, 64, "factored"): {"dstate_pass": 19456, "forward_pass": 43520, "grad_pass": 105472, "output_pass": 40448, "state_pass": 19456},
    (64, 64, "elementwise"): {"dstate_pass": 19456, "forward_pass": 100352, "grad_pass": 215040, "output_pass": 89088, "state_pass": 19456},
    (64, 64, "tensor"): {"dstate_pass": 19456, "forward_pass": 56320, "grad_pass": 131072, "output_pass": 45056, "state_pass": 19456},
    (64, 64, "chunk"): {"dstate_pass": 19456, "forward_pass": 27648, "grad_pass": 61440, "output_pass": 24576, "state_pass": 19456},
    (64, 128, "factored"): {"dstate_pass": 19456, "forward_pass": 43520, "grad_pass": 186368, "output_pass": 60416, "state_pass": 19456},
    (64, 128, "elementwise"): {"dstate_pass": 19456, "forward_pass": 100352, "grad_pass": 382976, "output_pass": 139264, "state_pass": 19456},
    (64, 128, "tensor"): {"dstate_pass": 19456, "forward_pass": 56320, "grad_pass": 249856, "output_pass": 86016, "state_pass": 19456},
    (64, 128, "chunk"): {"dstate_pass": 19456, "forward_pass": 27648, "grad_pass": 102400, "output_pass": 36864, "state_pass": 19456},
}

# The same counts with a freshly swapped model's gates (smem_bank_report --gates ugi: each channel's logits its
# Uniform Gate Initialization bias, decayfw.nn.uniform_gate_bias, plus N(0, 1) a token). Its fast channels (σ near
# 1/X) span more than wide_span_bound over a 16-token sub-chunk, and some channel of every chunk spans more than it
# over the chunk: no chunk is taken whole, so the chunk form runs as the tensor form does, the factored form factors
# its narrow columns only, and every form takes its wide columns per pair. Regenerate as above, with --gates ugi.
SMEM_WAVEFRONTS_UGI = {
    (32, 64, "factored"): {"dstate_pass": 1424, "forward_pass": 6340, "grad_pass": 16386, "output_pass": 5296, "state_pass": 1624},
    (32, 64, "elementwise"): {"dstate_pass": 1424, "forward_pass": 8566, "grad_pass": 22207, "output_pass": 7526, "state_pass": 1616},
    (32, 64, "tensor"): {"dstate_pass": 1424, "forward_pass": 5956, "grad_pass": 16573, "output_pass": 4916, "state_pass": 1616},
    (32, 64, "chunk"): {"dstate_pass": 1424, "forward_pass": 5968, "grad_pass": 16582, "output_pass": 4924, "state_pass": 1624},
    (32, 128, "factored"): {"dstate_pass": 1424, "forward_pass": 6663, "grad_pass": 32952, "output_pass": 10059, "state_pass": 1624},
    (32, 128, "elementwise"): {"dstate_pass": 1424, "forward_pass": 8566, "grad_pass": 40798, "output_pass": 12027, "state_pass": 1616},
    (32, 128, "tensor"): {"dstate_pass": 1424, "forward_pass": 6279, "grad_pass": 33764, "output_pass": 9736, "state_pass": 1616},
    (32, 128, "chunk"): {"dstate_pass": 1424, "forward_pass": 6291, "grad_pass": 33780, "output_pass": 9751, "state_pass": 1624},
    (64, 64, "factored"): {"dstate_pass": 2208, "forward_pass": 9122, "grad_pass": 22932, "output_pass": 7423, "state_pass": 2474},
    (64, 64, "elementwise"): {"dstate_pass": 2208, "forward_pass": 13330, "grad_pass": 30234, "output_pass": 11634, "state_pass": 2464},
    (64, 64, "tensor"): {"dstate_pass": 2208, "forward_pass": 8560, "grad_pass": 22664, "output_pass": 6864, "state_pass": 2464},
    (64, 64, "chunk"): {"dstate_pass": 2208, "forward_pass": 8574, "grad_pass": 22676, "output_pass": 6875, "state_pass": 2474},
    (64, 128, "factored"): {"dstate_pass": 2208, "forward_pass": 9340, "grad_pass": 43032, "output_pass": 13074, "state_pass": 2474},
    (64, 128, "elementwise"): {"dstate_pass": 2208, "forward_pass": 13330, "grad_pass": 53337, "output_pass": 17127, "state_pass": 2464},
    (64, 128, "tensor"): {"dstate_pass": 2208, "forward_pass": 8778, "grad_pass": 43386, "output_pass": 12844, "state_pass": 2464},
    (64, 128, "chunk"): {"dstate_pass": 2208, "forward_pass": 8792, "grad_pass": 43404, "output_pass": 12862, "state_pass": 2474},
}

MUFU_OPS_UGI = {
    (32, 64, "factored"): {"dstate_pass": 13824, "forward_pass": 45628, "grad_pass": 103296, "output_pass": 37948, "state_pass": 13824},
    (32, 64, "elementwise"): {"dstate_pass": 13824, "forward_pass": 70144, "grad_pass": 161280, "output_pass": 62464, "state_pass": 13824},
    (32, 64, "tensor"): {"dstate_pass": 13824, "forward_pass": 42720, "grad_pass": 102176, "output_pass": 35040, "state_pass": 13824},
    (32, 64, "chunk"): {"dstate_pass": 13824, "forward_pass": 42720, "grad_pass": 102176, "output_pass": 35040, "state_pass": 13824},
    (32, 128, "factored"): {"dstate_pass": 13824, "forward_pass": 47236, "grad_pass": 203092, "output_pass": 73756, "state_pass": 13824},
    (32, 128, "elementwise"): {"dstate_pass": 13824, "forward_pass": 70144, "grad_pass": 299008, "output_pass": 105472, "state_pass": 13824},
    (32, 128, "tensor"): {"dstate_pass": 13824, "forward_pass": 44244, "grad_pass": 202236, "output_pass": 69652, "state_pass": 13824},
    (32, 128, "chunk"): {"dstate_pass": 13824, "forward_pass": 44244, "grad_pass": 202236, "output_pass": 69652, "state_pass": 13824},
    (64, 64, "factored"): {"dstate_pass": 19456, "forward_pass": 62396, "grad_pass": 139392, "output_pass": 51132, "state_pass": 19456},
    (64, 64, "elementwise"): {"dstate_pass": 19456, "forward_pass": 100352, "grad_pass": 215040, "output_pass": 89088, "state_pass": 19456},
    (64, 64, "tensor"): {"dstate_pass": 19456, "forward_pass": 59488, "grad_pass": 137760, "output_pass": 48224, "state_pass": 19456},
    (64, 64, "chunk"): {"dstate_pass": 19456, "forward_pass": 59488, "grad_pass": 137760, "output_pass": 48224, "state_pass": 19456},
    (64, 128, "factored"): {"dstate_pass": 19456, "forward_pass": 63734, "grad_pass": 264578, "output_pass": 93838, "state_pass": 19456},
    (64, 128, "elementwise"): {"dstate_pass": 19456, "forward_pass": 100352, "grad_pass": 382976, "output_pass": 139264, "state_pass": 19456},
    (64, 128, "tensor"): {"dstate_pass": 19456, "forward_pass": 60742, "grad_pass": 264598, "output_pass": 91562, "state_pass": 19456},
    (64, 128, "chunk"): {"dstate_pass": 19456, "forward_pass": 60742, "grad_pass": 264598, "output_pass": 91562, "state_pass": 19456},
}

# The gate logits the tables were counted with: "normal", the benchmark's N(2, 1) (every column narrow, every
# chunk whole); "ugi", a freshly swapped model's (above).
GATES = ("normal", "ugi")
GATE_LABELS = {"normal": "N(2, 1)", "ugi": "ugi"}  # as the tables print them
_COUNTS = {("smem", "normal"): SMEM_WAVEFRONTS, ("smem", "ugi"): SMEM_WAVEFRONTS_UGI,
           ("mufu", "normal"): MUFU_OPS, ("mufu", "ugi"): MUFU_OPS_UGI}


def _per_call(table, N, T, D, M, forward, diagonal):
    """One forward+backward call's count of each chunk kernel from a per-chunk table (SMEM_WAVEFRONTS, MUFU_OPS),
    or None for sizes the table does not hold. The fused forward runs no state_pass or output_pass, the split one
    no forward_pass."""
    per_unit = table.get((M, D, "factored" if diagonal == "auto" else diagonal))
    if per_unit is None:
        return None
    chunks, tiles = -(-T // compiled_chunk(M)), D // 64
    units = {"grad_pass": N * chunks, "output_pass": N * chunks}  # the others: chunks × row tiles
    w = {k: per_unit[k] * units.get(k, N * chunks * tiles) for k in CHUNK_KERNELS}
    if forward == "fused":
        w["state_pass"] = w["output_pass"] = 0
    else:
        w["forward_pass"] = 0
    return w


def chunk_kernel_smem(N, T, D, M, forward="split", diagonal="factored", gates="normal"):
    """Shared-memory wavefronts of each chunk-path kernel in one forward+backward call (bf16; SMEM_WAVEFRONTS, or
    SMEM_WAVEFRONTS_UGI for gates="ugi"), or None for sizes the table does not hold."""
    return _per_call(_COUNTS[("smem", gates)], N, T, D, M, forward, diagonal)


def chunk_kernel_mufu(N, T, D, M, forward="split", diagonal="factored", gates="normal"):
    """Special-function (MUFU) operations of each chunk-path kernel in one forward+backward call (bf16;
    MUFU_OPS, or MUFU_OPS_UGI for gates="ugi"), or None for sizes the table does not hold."""
    return _per_call(_COUNTS[("mufu", gates)], N, T, D, M, forward, diagonal)


# The diagonal blocks' forms in the compute model (DECAYFW_CHUNK_DIAGONAL; fp16 runs the tensor and chunk forms as
# the factored one).
DIAGONALS = ("factored", "elementwise", "tensor", "chunk")


def print_compute_model(sizes, bw):
    print("Chunk path, forward+backward: the three floors of each kernel (model). MUFU: special-function operations "
          "(chunk_kernel_mufu) at 16 per clock per SM, 132 SMs, 1.98 GHz; smem: shared-memory wavefronts "
          "(chunk_kernel_smem) at one per clock per SM, both counted on the CPU by benchmarks/smem_bank_report; bytes: "
          f"chunk_kernel_bytes at {bw / 1e9:.0f} GB/s. Where either of the first two is larger than the third, the "
          "kernel cannot reach the bandwidth the traffic model assumes. diagonal: the 16×16 diagonal blocks' form "
          "(DECAYFW_CHUNK_DIAGONAL; every column per pair in the elementwise form). gates: the logits counted with, "
          "N(2, 1) (the benchmark's: no wide column, every chunk whole) or ugi (a freshly swapped model's: Uniform "
          "Gate Initialization biases + N(0, 1); fast channels wide, no chunk whole). bound: the I/O "
          "floor ÷ the sum over kernels of the largest floor (— for MUFU and smem where their tables have no such "
          "size)\n")
    print("| N | T | D | M | forward | diagonal | gates | "
          + " | ".join(f"{k} MUFU / smem / bytes µs" for k in CHUNK_KERNELS) + " | bound |")
    print("|---|---|---|---|---|---|---|" + "---|" * (len(CHUNK_KERNELS) + 1))
    for N, T, D, M in sizes:
        for gates, form, diagonal in itertools.product(GATES, CHUNK_FORWARDS, DIAGONALS):
            mufu = chunk_kernel_mufu(N, T, D, M, forward=form, diagonal=diagonal, gates=gates)
            smem = chunk_kernel_smem(N, T, D, M, forward=form, diagonal=diagonal, gates=gates)
            b = chunk_kernel_bytes(N, T, D, M, forward=form)
            us = lambda k: (mufu[k] / MUFU_OPS_PER_SECOND * 1e6 if mufu else 0.0,
                            smem[k] / SMEM_WAVEFRONTS_PER_SECOND * 1e6 if smem else 0.0, b[k] / bw * 1e6)
            counted = lambda k, i, table: f"{us(k)[i]:.0f}" if table else "—"
            cell = lambda k: (f"{counted(k, 0, mufu)} / {counted(k, 1, smem)} / {us(k)[2]:.0f}"
                              if max(us(k)) else "—")
            floor_us = io_floor_bytes(N, T, D, M, True) / bw * 1e6
            bound = floor_us / sum(max(us(k)) for k in CHUNK_KERNELS)
            print(f"| {N} | {T} | {D} | {M} | {form} | {diagonal} | {GATE_LABELS[gates]} | "
                  + " | ".join(cell(k) for k in CHUNK_KERNELS)
                  + f" | {100 * bound:.0f}% |")
    print()


def print_traffic_model(sizes):
    print("Chunk path, forward+backward: HBM traffic by kernel (model, MB; chunk_kernel_bytes, the backward reusing "
          "the forward's chunk states) against the I/O floor, for each forward form. 'bound' = floor ÷ model: the "
          "largest fraction of the floor this design can reach at copy bandwidth; 'bound, recomputed' = the same "
          "with save_chunk_states=False\n")
    print("| N | T | D | M | forward | " + " | ".join(CHUNK_KERNELS) + " | model total | I/O floor | bound | bound, recomputed |")
    print("|---|---|---|---|---|" + "---|" * (len(CHUNK_KERNELS) + 4))
    for N, T, D, M in sizes:
        for form in CHUNK_FORWARDS:
            b = chunk_kernel_bytes(N, T, D, M, forward=form)
            total, floor = sum(b.values()), io_floor_bytes(N, T, D, M, True)
            recomputed = sum(chunk_kernel_bytes(N, T, D, M, reuse_states=False, forward=form).values())
            print(f"| {N} | {T} | {D} | {M} | {form} | " + " | ".join(f"{b[k] / 1e6:.0f}" for k in CHUNK_KERNELS)
                  + f" | {total / 1e6:.0f} | {floor / 1e6:.0f} | {100 * floor / total:.0f}% | "
                  f"{100 * floor / recomputed:.0f}% |")
    print()


def print_kernel_breakdown(sizes, bw):
    print("Chunk path, forward+backward by kernel (bf16, µs per call, torch.profiler; "
          "'other': PyTorch's own kernels: gradient seeds, zero fills, workspace). GB/s: the model's bytes "
          "(chunk_kernel_bytes) ÷ the kernel's time; far below the copy bandwidth means latency-bound. "
          "threads: per CTA of every chunk kernel; diagonal: the 16×16 diagonal blocks factored in fp32 (auto), "
          "per pair (elementwise) or on tensor cores where the gates allow (tensor); chain: a whole chunk's two "
          "products chained in registers (auto) or through shared memory (off); grad phases: the chunk form's four "
          "chains in grad_pass as four phases (auto) or one at 256 threads (one); gates: the benchmark's N(2, 1) "
          "logits, or a freshly swapped model's (ugi: no chunk whole, fast channels wide)\n")
    print("| N | T | D | M | forward | threads | diagonal | chain | grad phases | gates | "
          + " | ".join(f"{k} µs (GB/s)" for k in CHUNK_KERNELS) + " | other µs | total µs | serial passes share |")
    print("|---|---|---|---|---|---|---|---|---|---|" + "---|" * (len(CHUNK_KERNELS) + 3))
    for N, T, D, M, form, (threads, diagonal, chain, phases, gates) in ((*s, f, v) for s in sizes
                                                                        for f in CHUNK_FORWARDS
                                                                        for v in BREAKDOWN_VARIANTS):
        head = (f"| {N} | {T} | {D} | {M} | {form} | {threads} | {diagonal} | {chain} | {phases} | "
                f"{GATE_LABELS[gates]} |")
        try:
            us = kernel_breakdown(N, T, D, M, form, threads, diagonal=diagonal, chain=chain, grad_phases=phases,
                                  gates=gates)
        except Exception as e:  # a profiler fault must not cost the rest of the run
            print(f"{head} kernel breakdown failed: {type(e).__name__}: {e} |")
            continue
        model = chunk_kernel_bytes(N, T, D, M, forward=form)
        total = sum(us.values())
        serial = (us["state_pass"] + us["forward_pass"] + us["dstate_pass"]) / total if total else 0.0
        cell = lambda k: f"{us[k]:.0f} ({model[k] / (us[k] * 1e3):.0f})" if us[k] else "0"
        print(f"{head} " + " | ".join(cell(k) for k in CHUNK_KERNELS)
              + f" | {us['other']:.0f} | {total:.0f} | {100 * serial:.0f}% |", flush=True)
        torch.cuda.empty_cache()
    print(f"(copy bandwidth {bw / 1e9:.0f} GB/s)\n")


def sweep_order(Ns, Ts, Ds, Ms, first_t=2048):
    """The sweep's sizes (N, T, D, M) in the order they are run: the lengths the issue's targets name
    (T ≥ first_t) before the shorter ones, shortest first within each group; then D, M and N in the order
    given. A run stopped by its time budget then has the targets' rows."""
    key = lambda T: (T < first_t, T)
    return [(N, T, D, M) for T in sorted(Ts, key=key) for D in Ds for M in Ms for N in Ns]


def print_decode_table(Ds, Ms, Ns, bw):
    print("Decode step (one token; KV cache of length T for attention; bf16 inputs, fp32 decay state)\n")
    print("| D | M | N | decayfw step µs | decayfw step in a CUDA graph µs | " +
          " | ".join(f"SDPA T={T} µs" for T in (512, 2048, 8192)) + " | state bytes / time (% of copy BW) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for D in Ds:
        for M in Ms:
            for N in Ns:
                B, H = N // 16, 16
                x = [torch.randn(B, H, X, device="cuda", dtype=torch.bfloat16) for X in (M, M, D, D, M)]
                state = torch.zeros(B, H, D, M, device="cuda")
                step = lambda: decayfw.decay_step(*x, state)
                us, _ = bench(step, 100)
                g = torch.cuda.CUDAGraph()
                s = torch.cuda.Stream()
                s.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(s):
                    step()
                torch.cuda.current_stream().wait_stream(s)
                with torch.cuda.graph(g):
                    step()
                gus, _ = bench(g.replay, 100)
                attn = []
                for T in (512, 2048, 8192):
                    qd = torch.randn(B, H, 1, D, device="cuda", dtype=torch.bfloat16)
                    K = torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16)
                    V = torch.randn_like(K)
                    ams, _ = bench(lambda: F.scaled_dot_product_attention(qd, K, V), 100)
                    attn.append(ams * 1e3)
                frac = 2 * N * D * M * 4 / (gus / 1e3) / bw
                print(f"| {D} | {M} | {N} | {us * 1e3:.1f} | {gus * 1e3:.1f} | " +
                      " | ".join(f"{t:.1f}" for t in attn) + f" | {100 * frac:.0f}% |", flush=True)
    print()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--N", type=int, nargs="+", default=[64, 256])
    p.add_argument("--T", type=int, nargs="+", default=[512, 2048, 8192], help="run T ≥ 2048 first (sweep_order)")
    p.add_argument("--D", type=int, nargs="+", default=[128, 64])
    p.add_argument("--M", type=int, nargs="+", default=[32, 64])
    p.add_argument("--reps", type=int, default=20)
    p.add_argument("--naive-max-t", type=int, default=512)
    p.add_argument("--json", default=None)
    p.add_argument("--time-budget", type=float, default=None, metavar="S",
                   help="start no sweep size after S seconds from the start; the tables still print, naming the "
                        "sizes left out")
    p.add_argument("--traffic-model", action="store_true",
                   help="print the chunk path's HBM traffic model for the issue's sizes and exit (no GPU needed)")
    p.add_argument("--breakdown", type=int, nargs=4, action="append", metavar=("N", "T", "D", "M"),
                   help="sizes of the per-kernel breakdown (repeatable; default: N 64 and 256 at T 8192, D 128, M 64, "
                        "and N 64, T 2048, D 128, M 32); --breakdown 0 0 0 0 skips it")
    a = p.parse_args(argv)
    started = time.monotonic()
    if a.traffic_model:
        sizes = [(N, T, D, M) for D in a.D for M in a.M for N in a.N for T in a.T]
        print_traffic_model(sizes)
        print_compute_model(sizes, 4.3e12)  # the copy bandwidth seen on an H200 (docs/cuda-design-log.md, "A second floor")
        return 0
    if not torch.cuda.is_available():
        p.exit(1, "bench_gpu: CUDA is not available (this benchmark times the CUDA kernels on a GPU; "
                  "benchmarks/run_cpu_benchmarks.sh times the CPU ones)\n")
    if not decayfw.BUILT_WITH_CUDA:
        p.exit(1, "bench_gpu: decayfw was built without its CUDA kernels (build against a CUDA LibTorch, "
                  "see tests/gpu/run_all.sh)\n")
    dev = torch.cuda.get_device_name()
    bw = copy_bandwidth()
    print(f"GPU: {dev}; torch {torch.__version__}; measured copy bandwidth {bw / 1e9:.0f} GB/s; "
          f"fla: {'yes' if fused_recurrent_gla else 'not installed'}\n")
    fla = fused_recurrent_gla
    if fla is not None:  # fla's two-gate path is untested upstream: check it against ours first
        try:
            x, _, _ = make_inputs(16, 300, 64, 32, dtype=torch.float32)
            os.environ["DECAYFW_CUDA_PATH"] = "recurrent"
            ours = decayfw.decay_fast_weights(x["q"], x["k"], x["v"], x["z"], x["f"])
            theirs, _ = fla(x["q"], x["k"], x["v"], gk=F.logsigmoid(x["f"]), gv=F.logsigmoid(x["z"]), scale=1.0)
            err = ((ours - theirs).abs().max() / ours.abs().max()).item()
            print(f"fla fused_recurrent_gla(gk, gv) vs decayfw (fp32, recurrent): max relative difference {err:.1e}\n")
        except Exception as e:  # an fla that does not run here must not cost the other columns
            print(f"fla fused_recurrent_gla does not run here ({type(e).__name__}: {e}); no fla column\n")
            fla = None
    breakdown = a.breakdown or [(64, 8192, 128, 64), (256, 8192, 128, 64), (64, 2048, 128, 32)]
    breakdown = [tuple(b) for b in breakdown if all(b)]
    if breakdown:
        print_traffic_model(breakdown)
        print_compute_model(breakdown, bw)
        print_kernel_breakdown(breakdown, bw)
    print_decode_table(a.D, a.M, a.N, bw)
    rows, left_out = [], []
    for N, T, D, M in sweep_order(a.N, a.T, a.D, a.M):
        if a.time_budget is not None and time.monotonic() - started > a.time_budget:
            left_out.append((N, T, D, M))
            continue
        for mode in ("fwd", "fwd+bwd"):
            bwd = mode == "fwd+bwd"
            row = {"N": N, "T": T, "D": D, "M": M, "mode": mode}
            cands = {}
            x, B, H = make_inputs(N, T, D, M, requires_grad=bwd)
            cands["chunk"] = lambda x=x: run_decayfw(x, bwd, "chunk")
            for form in CHUNK_FORWARDS:
                cands["chunk-" + form] = lambda x=x, form=form: run_decayfw(x, bwd, "chunk", forward=form)
            if bwd:
                cands["chunk-recompute"] = lambda x=x: run_decayfw(x, bwd, "chunk", False)
            for diagonal in ("elementwise", "tensor", "chunk"):
                label = "chunk-whole" if diagonal == "chunk" else "chunk-" + diagonal
                cands[label] = lambda x=x, d=diagonal: run_decayfw(x, bwd, "chunk", diagonal=d)
            # What a freshly swapped model's gates cost the same default path (no chunk whole, wide columns per pair).
            xu, _, _ = make_inputs(N, T, D, M, requires_grad=bwd, gates="ugi")
            cands["chunk-ugi"] = lambda xu=xu: run_decayfw(xu, bwd, "chunk")
            cands["recurrent"] = lambda x=x: run_decayfw(x, bwd, "recurrent")
            if T <= a.naive_max_t:
                cands["naive"] = lambda x=x: run_naive(x, bwd)
            if triton is not None and M % 16 == 0:
                t2 = to_t2fw(x)
                cands["t2fw"] = lambda t2=t2: run_t2fw(t2, bwd)
            if fla is not None:
                cands["fla"] = lambda x=x: run_fla(fla, x, bwd)
            qkv = [torch.randn(B, H, T, D, device="cuda", dtype=torch.bfloat16, requires_grad=bwd)
                   for _ in range(3)]
            cands["sdpa"] = lambda qkv=qkv: run_sdpa(qkv, bwd)
            for name, fn in cands.items():
                try:
                    ms, mib = bench(fn, a.reps if name != "naive" else 3)
                    row[name] = {"ms": ms, "peak_MiB": mib}
                except torch.cuda.OutOfMemoryError:
                    row[name] = {"ms": None, "peak_MiB": "OOM"}
                    torch.cuda.empty_cache()
                except Exception as e:  # one failing candidate (a Triton build, say) must not cost the table
                    row[name] = {"ms": None, "peak_MiB": "error"}
                    print(f"bench_gpu: {name} at N={N} T={T} D={D} M={M} {mode}: {type(e).__name__}: {e}",
                          file=sys.stderr, flush=True)
                    torch.cuda.empty_cache()
            for name in ("chunk", "chunk-whole", "chunk-ugi", "recurrent"):
                ms = row[name].get("ms")
                row[name]["io_floor_frac"] = (io_floor_bytes(N, T, D, M, bwd) / (ms / 1e3) / bw
                                              if ms else None)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            del x, xu, cands, qkv
            torch.cuda.empty_cache()
    order = lambda r: (a.D.index(r["D"]), a.M.index(r["M"]), a.N.index(r["N"]), r["T"], r["mode"])
    rows.sort(key=order)
    names = ["chunk", "chunk-fused", "chunk-split", "chunk-recompute", "chunk-elementwise", "chunk-tensor",
             "chunk-whole", "chunk-ugi", "recurrent", "naive", "t2fw", "fla", "sdpa"]
    pct = lambda f: "—" if f is None else f"{100 * f:.0f}%"
    print("| D | M | N | T | mode | " + " | ".join(f"{n} ms (MiB)" for n in names)
          + " | chunk % of I/O floor | recurrent % of I/O floor |")
    print("|---|---|---|---|---|" + "---|" * (len(names) + 2))
    for r in rows:
        cells = []
        for n in names:
            c = r.get(n)
            cells.append("—" if c is None else (c["peak_MiB"] if c["ms"] is None else f"{c['ms']:.3f} ({c['peak_MiB']:.0f})"))
        print(f"| {r['D']} | {r['M']} | {r['N']} | {r['T']} | {r['mode']} | " + " | ".join(cells)
              + f" | {pct(r['chunk']['io_floor_frac'])} | {pct(r['recurrent']['io_floor_frac'])} |")

    # The targets, read off the rows above: speed-ups of the chunk path and its memory.
    ratio = lambda r, n, key="ms": (r[n][key] / r["chunk"][key]
                                    if n in r and isinstance(r[n][key], (int, float)) and r["chunk"]["ms"] else None)
    fmt = lambda v: "—" if v is None else f"{v:.1f}×"
    print("\nTargets (chunk path): fwd+bwd ≥ 50% of the I/O floor at T ≥ 2048; ≥ 3× fla; ≥ 10× T2FW; "
          "faster than SDPA at T = 2048, M = 32; memory ≤ 1/16 of T2FW's\n")
    print("| D | M | N | T | mode | % of I/O floor | chunk-whole % of I/O floor | UGI gates % of I/O floor | "
          "fla ÷ chunk | T2FW ÷ chunk | SDPA ÷ chunk | T2FW memory ÷ chunk memory |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        whole = r.get("chunk-whole", {}).get("io_floor_frac")
        ugi = r.get("chunk-ugi", {}).get("io_floor_frac")
        print(f"| {r['D']} | {r['M']} | {r['N']} | {r['T']} | {r['mode']} | {pct(r['chunk']['io_floor_frac'])} | "
              f"{pct(whole)} | {pct(ugi)} | "
              f"{fmt(ratio(r, 'fla'))} | {fmt(ratio(r, 't2fw'))} | {fmt(ratio(r, 'sdpa'))} | "
              f"{fmt(ratio(r, 't2fw', 'peak_MiB'))} |")

    if left_out:
        print(f"\nNot run: the time budget ({a.time_budget:.0f} s) was spent before these sizes (N, T, D, M): "
              + ", ".join(f"({N}, {T}, {D}, {M})" for N, T, D, M in left_out))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"gpu": dev, "torch": torch.__version__, "copy_bw": bw, "rows": rows,
                       "left_out": [dict(zip("NTDM", s)) for s in left_out]}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
