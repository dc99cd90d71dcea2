"""Readable pure-PyTorch references of every rule (decay, add, gated, delta).

The definition, one token at a time, with the state in fp32 (fp64 for fp64 inputs). Used by the
tests as the oracle for the native op, and by :mod:`decayfw.ops` as the fallback when the native
extension is missing (with a warning). It is slow (a Python loop over time) and stores every state
for autograd: O(T·D·M) memory, exactly what the native op avoids.

Layout (see kernels/README.md): q, k, f ``[B, T, H, M]``; v, z ``[B, T, H, D]``;
state ``[B, H, D, M]``.
"""
from typing import Optional, Tuple

import torch

__all__ = ["decay_fast_weights_reference", "decay_step_reference", "state_dtype_for", "add_reference",
           "gated_reference", "delta_reference", "normalized_reference"]


def state_dtype_for(dtype: torch.dtype) -> torch.dtype:
    """The state's dtype for inputs of ``dtype``: fp64 for fp64 inputs, fp32 for everything else."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def decay_fast_weights_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    z: torch.Tensor,
    f: torch.Tensor,
    initial_state: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """``S_t = (σ(z_t) σ(f_t)ᵀ) ⊙ S_{t-1} + v_t k_tᵀ``, ``y_t = S_t q_t``; returns ``(y, S_T)``."""
    B, T, H, M = q.shape
    D = v.shape[-1]
    acc = state_dtype_for(q.dtype)
    S = (initial_state.to(acc) if initial_state is not None
         else torch.zeros(B, H, D, M, dtype=acc, device=q.device))
    a = torch.sigmoid(z.to(acc))  # [B, T, H, D]
    b = torch.sigmoid(f.to(acc))  # [B, T, H, M]
    ys = []
    for t in range(T):
        gate = a[:, t].unsqueeze(-1) * b[:, t].unsqueeze(-2)              # [B, H, D, M]
        write = v[:, t].to(acc).unsqueeze(-1) * k[:, t].to(acc).unsqueeze(-2)
        S = gate * S + write
        ys.append(torch.einsum("bhdm,bhm->bhd", S, q[:, t].to(acc)))
    y = torch.stack(ys, dim=1).to(v.dtype)
    return y, S


def decay_step_reference(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, z: torch.Tensor, f: torch.Tensor, state: torch.Tensor
) -> torch.Tensor:
    """One token (q, k, f ``[B, H, M]``; v, z ``[B, H, D]``); updates ``state`` in place, returns y."""
    acc = state.dtype
    gate = torch.sigmoid(z.to(acc)).unsqueeze(-1) * torch.sigmoid(f.to(acc)).unsqueeze(-2)
    state.mul_(gate).add_(v.to(acc).unsqueeze(-1) * k.to(acc).unsqueeze(-2))
    return torch.einsum("bhdm,bhm->bhd", state, q.to(acc)).to(v.dtype)


# -- the paper's other rules ---------------------------------------------------------------------
# g and beta are logits [B, T, H] ([B, H] for a step): one gate / write strength per head and step.

def _zero_or(initial_state, B, H, D, M, acc, device):
    return (initial_state.to(acc) if initial_state is not None
            else torch.zeros(B, H, D, M, dtype=acc, device=device))


def add_reference(q, k, v, initial_state=None):
    """Additive rule (Katharopoulos et al. 2020): ``S_t = S_{t-1} + v_t k_tᵀ``, ``y_t = S_t q_t``."""
    B, T, H, M = q.shape
    acc = state_dtype_for(q.dtype)
    S = _zero_or(initial_state, B, H, v.shape[-1], M, acc, q.device)
    ys = []
    for t in range(T):
        S = S + v[:, t].to(acc).unsqueeze(-1) * k[:, t].to(acc).unsqueeze(-2)
        ys.append(torch.einsum("bhdm,bhm->bhd", S, q[:, t].to(acc)))
    return torch.stack(ys, dim=1).to(v.dtype), S


def gated_reference(q, k, v, g, initial_state=None):
    """Gated rule (Peng et al. 2021): ``S_t = σ(g_t) S_{t-1} + (1 − σ(g_t)) v_t k_tᵀ``, ``y_t = S_t q_t``."""
    B, T, H, M = q.shape
    acc = state_dtype_for(q.dtype)
    S = _zero_or(initial_state, B, H, v.shape[-1], M, acc, q.device)
    gate = torch.sigmoid(g.to(acc))[..., None, None]  # [B, T, H, 1, 1]
    ys = []
    for t in range(T):
        S = gate[:, t] * S + (1 - gate[:, t]) * (v[:, t].to(acc).unsqueeze(-1) * k[:, t].to(acc).unsqueeze(-2))
        ys.append(torch.einsum("bhdm,bhm->bhd", S, q[:, t].to(acc)))
    return torch.stack(ys, dim=1).to(v.dtype), S


def delta_reference(q, k, v, beta, initial_state=None):
    """Delta rule (Schlag et al. 2021): ``S_t = S_{t-1} + σ(β_t) (v_t − S_{t-1} k_t) k_tᵀ``, ``y_t = S_t q_t``."""
    B, T, H, M = q.shape
    acc = state_dtype_for(q.dtype)
    S = _zero_or(initial_state, B, H, v.shape[-1], M, acc, q.device)
    b = torch.sigmoid(beta.to(acc))[..., None, None]
    ys = []
    for t in range(T):
        kt = k[:, t].to(acc)
        retrieved = torch.einsum("bhdm,bhm->bhd", S, kt)
        S = S + b[:, t] * ((v[:, t].to(acc) - retrieved).unsqueeze(-1) * kt.unsqueeze(-2))
        ys.append(torch.einsum("bhdm,bhm->bhd", S, q[:, t].to(acc)))
    return torch.stack(ys, dim=1).to(v.dtype), S


def normalized_reference(rule, q, k, v, gate=None, eps=1e-6):
    """A rule **with attention normalisation**, written out as in the paper (Eqs. 3 and 5):
    a second recurrence for the normaliser ``z_t`` next to ``S_t``, and ``y_t = S_t q_t / (z_tᵀ q_t)``.

    ``add``:   z_t = z_{t-1} + k_t;   ``gated``: z_t = σ(g_t) z_{t-1} + (1 − σ(g_t)) k_t;
    ``decay``: z_t = σ(f_t) ⊙ z_{t-1} + k_t (the normaliser has no row, so only the column gate).
    ``gate`` is g ``[B, T, H]`` (gated) or ``(z, f)`` (decay). The denominator is clamped at ``eps``.
    """
    B, T, H, M = q.shape
    acc = state_dtype_for(q.dtype)
    S = torch.zeros(B, H, v.shape[-1], M, dtype=acc, device=q.device)
    zn = torch.zeros(B, H, M, dtype=acc, device=q.device)
    ys = []
    for t in range(T):
        kt, vt, qt = k[:, t].to(acc), v[:, t].to(acc), q[:, t].to(acc)
        write = vt.unsqueeze(-1) * kt.unsqueeze(-2)
        if rule == "add":
            S, zn = S + write, zn + kt
        elif rule == "gated":
            a = torch.sigmoid(gate[:, t].to(acc))[..., None]
            S = a[..., None] * S + (1 - a[..., None]) * write
            zn = a * zn + (1 - a) * kt
        elif rule == "decay":
            a = torch.sigmoid(gate[0][:, t].to(acc))
            b = torch.sigmoid(gate[1][:, t].to(acc))
            S = a.unsqueeze(-1) * b.unsqueeze(-2) * S + write
            zn = b * zn + kt
        else:
            raise ValueError(f"normalized_reference: rule must be add, gated or decay, got {rule!r}")
        num = torch.einsum("bhdm,bhm->bhd", S, qt)
        den = (zn * qt).sum(-1, keepdim=True).clamp_min(eps)
        ys.append(num / den)
    return torch.stack(ys, dim=1).to(v.dtype)
