"""Inputs and comparisons shared by the GPU tests (test_cuda_op.py: the recurrent path and the decode
step; test_cuda_chunk.py: the chunkwise tensor-core path). Every case is made in fp64 on the CPU, so the
fp64 CPU op, the oracle, sees exactly the values the GPU does."""
import pytest
import torch

import decayfw

requires_gpu = pytest.mark.skipif(not (torch.cuda.is_available() and decayfw.BUILT_WITH_CUDA),
                                  reason="needs a GPU and decayfw built against a CUDA LibTorch")


def make(B, T, H, D, M, gate_mean=2.0, gate_spread=1.0, seed=0):
    """q, k, v, z, f [B, T, H, ·] and s0 [B, H, D, M] in fp64; gate logits ~ N(gate_mean, gate_spread²)."""
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)
    q, k = r(B, T, H, M) / M ** 0.5, r(B, T, H, M) / M ** 0.5
    f, z = gate_mean + gate_spread * r(B, T, H, M), gate_mean + gate_spread * r(B, T, H, D)
    v, s0 = r(B, T, H, D), r(B, H, D, M)
    return q, k, v, z, f, s0


def saturated(T, D, M, seed=5):
    """One sequence whose gate logits are all ±30 (σ = 1 − 1e-13 or 1e-13): the log-gate sums run to
    ±10⁶ over T = 65,536, which overflows any form that divides by cumulative products."""
    g = torch.Generator().manual_seed(seed)
    sat = lambda X: torch.where(torch.rand(1, T, 1, X, generator=g) < 0.5, -30.0, 30.0).double()
    q = torch.randn(1, T, 1, M, generator=g, dtype=torch.float64) * 0.1
    k = torch.randn(1, T, 1, M, generator=g, dtype=torch.float64) * 0.1
    v = torch.randn(1, T, 1, D, generator=g, dtype=torch.float64)
    return q, k, v, sat(D), sat(M)


def rel(a, b):
    """max |a − b| ÷ max(1, max |b|), on the CPU in fp64."""
    a, b = a.double().cpu(), b.double().cpu()
    return ((a - b).abs().max() / b.abs().max().clamp_min(1.0)).item()
