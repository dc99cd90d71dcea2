"""Readable pure-PyTorch reference of the decay rule.

The definition, one token at a time, with the state in fp32 (fp64 for fp64 inputs). Used by the
tests as the oracle for the native op, and by :mod:`decayfw.ops` as the fallback when the native
extension is missing (with a warning). It is slow (a Python loop over time) and stores every state
for autograd: O(T·D·M) memory, exactly what the native op avoids.

Layout (see kernels/README.md): q, k, f ``[B, T, H, M]``; v, z ``[B, T, H, D]``;
state ``[B, H, D, M]``.
"""
from typing import Optional, Tuple

import torch

__all__ = ["decay_fast_weights_reference", "decay_step_reference", "state_dtype_for"]


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
