"""The paper's other update rules as differentiable PyTorch functions: additive, gated, delta.

Each has a whole-sequence function (autograd through the native ``*_bwd`` op, which recomputes
instead of storing states) and a decode step (state updated in place), like :mod:`decayfw.ops` for
the decay rule. Shapes: q, k ``[B, T, H, M]`` (after any feature map), v ``[B, T, H, D]``, the gate
``g`` and write strength ``beta`` are **logits** ``[B, T, H]`` (``[B, H]`` for a step), states
``[B, H, D, M]`` fp32 (fp64 for fp64 inputs).

Devices: the native ops run on CPU. On a GPU there are no dedicated kernels (see docs/cuda.md):
``add`` and ``gated`` run through the decay rule's CUDA op with unit gates (σ(50) = 1 exactly in
fp32) and, for gated, values pre-scaled by 1 − σ(g); ``delta`` runs a chunked PyTorch loop with one
activation checkpoint per 64 steps. Without the extension everything falls back to
:mod:`decayfw.reference` with a warning (raised once by the loader).
"""
from typing import Optional, Tuple, Union

import torch
from torch.utils.checkpoint import checkpoint

from . import _loader
from .ops import _last_dim_contiguous, _validate, decay_fast_weights
from .reference import add_reference, delta_reference, gated_reference, state_dtype_for

__all__ = ["add_fast_weights", "gated_fast_weights", "delta_fast_weights", "add_step", "gated_step", "delta_step"]

# σ(_UNIT_LOGIT) == 1.0 exactly in fp32 and fp64: a gate that keeps everything.
_UNIT_LOGIT = 50.0
_DELTA_CHUNK = 64


def _native(op: str, device: torch.device) -> bool:
    if not _loader.HAS_EXTENSION:
        return False
    key = "CPU" if device.type == "cpu" else "CUDA" if device.type == "cuda" else None
    return key is not None and torch._C._dispatch_has_kernel_for_dispatch_key(f"decayfw::{op}", key)


def _check_head_scalar(op: str, name: str, t, q: torch.Tensor, rank: int):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{op}: argument '{name}' must be a torch.Tensor, got {type(t).__name__}")
    want = tuple(q.shape[:-1])
    if tuple(t.shape) != want:
        lay = "[B, T, H]" if rank == 4 else "[B, H]"
        raise ValueError(f"{op}: argument '{name}' must have shape {lay} = {list(want)} (one logit per head and "
                         f"step), got {list(t.shape)}")
    if t.dtype != q.dtype:
        raise ValueError(f"{op}: argument '{name}' has dtype {t.dtype} but 'q' has {q.dtype}; all inputs must "
                         f"share one dtype")
    if t.device != q.device:
        raise ValueError(f"{op}: argument '{name}' is on {t.device} but 'q' is on {q.device}")


def _prepare(op, q, k, v, extra, extra_name, state, state_name, rank):
    _validate(op, ("q", "k", "v"), (q, k, v), rank, state, state_name)
    if extra_name is not None:
        _check_head_scalar(op, extra_name, extra, q, rank)
    q, k, v = (_last_dim_contiguous(t) for t in (q, k, v))
    if state is not None and state_name == "initial_state":
        state = state.contiguous()
    return q, k, v, state


class _RuleFunction(torch.autograd.Function):
    """Autograd over ``decayfw::<rule>_fwd`` / ``_bwd``; saves inputs only (the backward recomputes)."""

    @staticmethod
    def forward(ctx, rule, q, k, v, extra, initial_state):
        args = (q, k, v) if extra is None else (q, k, v, extra)
        y, final_state = getattr(torch.ops.decayfw, f"{rule}_fwd")(*args, initial_state)
        ctx.rule = rule
        ctx.has_extra = extra is not None
        ctx.has_initial_state = initial_state is not None
        ctx.save_for_backward(q, k, v, extra, initial_state)
        return y, final_state

    @staticmethod
    def backward(ctx, dy, d_final_state):
        q, k, v, extra, initial_state = ctx.saved_tensors
        dy = torch.zeros_like(v) if dy is None else _last_dim_contiguous(dy.to(v.dtype))
        if d_final_state is not None:
            d_final_state = d_final_state.contiguous()
        args = (q, k, v) if not ctx.has_extra else (q, k, v, extra)
        grads = getattr(torch.ops.decayfw, f"{ctx.rule}_bwd")(*args, initial_state, dy, d_final_state)
        dq, dk, dv = grads[:3]
        dextra = grads[3] if ctx.has_extra else None
        ds0 = grads[-1] if ctx.has_initial_state else None
        return None, dq, dk, dv, dextra, ds0


def _ones(shape, like):
    return torch.full(shape, _UNIT_LOGIT, dtype=like.dtype, device=like.device)


def _delta_chunk(q, k, v, beta, S):
    y, S = delta_reference(q, k, v, beta, S)
    return y, S


def _delta_chunked(q, k, v, beta, initial_state):
    """Delta rule in PyTorch, one activation checkpoint per chunk: O(T / 64) stored states."""
    B, T, H, M = q.shape
    S = initial_state if initial_state is not None else torch.zeros(
        B, H, v.shape[-1], M, dtype=state_dtype_for(q.dtype), device=q.device)
    ys = []
    for t0 in range(0, T, _DELTA_CHUNK):
        sl = slice(t0, min(T, t0 + _DELTA_CHUNK))
        if torch.is_grad_enabled():
            y, S = checkpoint(_delta_chunk, q[:, sl], k[:, sl], v[:, sl], beta[:, sl], S, use_reentrant=False)
        else:
            y, S = _delta_chunk(q[:, sl], k[:, sl], v[:, sl], beta[:, sl], S)
        ys.append(y)
    return torch.cat(ys, dim=1), S


def _run(rule, q, k, v, extra, initial_state):
    if _native(f"{rule}_fwd", q.device):
        return _RuleFunction.apply(rule, q, k, v, extra, initial_state)
    if not _loader.HAS_EXTENSION:
        ref = {"add": lambda: add_reference(q, k, v, initial_state),
               "gated": lambda: gated_reference(q, k, v, extra, initial_state),
               "delta": lambda: delta_reference(q, k, v, extra, initial_state)}
        return ref[rule]()
    # A device without a dedicated kernel (CUDA): see the module docstring.
    B, T, H, M = q.shape
    D = v.shape[-1]
    if rule == "add":
        return decay_fast_weights(q, k, v, _ones((B, T, H, D), v), _ones((B, T, H, M), q), initial_state, True)
    if rule == "gated":
        keep = torch.sigmoid(extra.to(state_dtype_for(v.dtype)))
        vw = (v * (1 - keep).unsqueeze(-1)).to(v.dtype)
        z = extra.unsqueeze(-1).expand(B, T, H, D).contiguous()
        return decay_fast_weights(q, k, vw, z, _ones((B, T, H, M), q), initial_state, True)
    return _delta_chunked(q, k, v, extra, initial_state)


def _finish(out, output_final_state):
    y, s = out
    return (y, s) if output_final_state else y


def add_fast_weights(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, initial_state: Optional[torch.Tensor] = None,
                     output_final_state: bool = False) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """Additive rule (Katharopoulos et al. 2020; Eq. 3 without its normaliser):
    ``S_t = S_{t-1} + v_t k_tᵀ``, ``y_t = S_t q_t``. Returns ``y`` (and ``S_T`` if asked)."""
    q, k, v, initial_state = _prepare("add_fast_weights", q, k, v, None, None, initial_state, "initial_state", 4)
    return _finish(_run("add", q, k, v, None, initial_state), output_final_state)


def gated_fast_weights(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor,
                       initial_state: Optional[torch.Tensor] = None,
                       output_final_state: bool = False) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """Gated rule (Peng et al. 2021; Eq. 5 without its normaliser):
    ``S_t = σ(g_t) S_{t-1} + (1 − σ(g_t)) v_t k_tᵀ``, ``y_t = S_t q_t``; ``g`` logits ``[B, T, H]``."""
    q, k, v, initial_state = _prepare("gated_fast_weights", q, k, v, g, "g", initial_state, "initial_state", 4)
    return _finish(_run("gated", q, k, v, g, initial_state), output_final_state)


def delta_fast_weights(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor,
                       initial_state: Optional[torch.Tensor] = None,
                       output_final_state: bool = False) -> Union[torch.Tensor, Tuple[torch.Tensor, torch.Tensor]]:
    """Delta rule (Schlag et al. 2021; Eq. 6): ``S_t = S_{t-1} + σ(β_t) (v_t − S_{t-1} k_t) k_tᵀ``,
    ``y_t = S_t q_t``; ``beta`` logits ``[B, T, H]``. Sum-normalise q and k before (the layer does)."""
    q, k, v, initial_state = _prepare("delta_fast_weights", q, k, v, beta, "beta", initial_state, "initial_state", 4)
    return _finish(_run("delta", q, k, v, beta, initial_state), output_final_state)


def _step(rule, q, k, v, extra, state):
    extra_name = {"add": None, "gated": "g", "delta": "beta"}[rule]
    q, k, v, state = _prepare(f"{rule}_step", q, k, v, extra, extra_name, state, "state", 3)
    if not state.is_contiguous():
        raise ValueError(f"{rule}_step: argument 'state' must be contiguous (it is updated in place)")
    with torch.no_grad():
        if _native(f"{rule}_step", q.device):
            args = (q, k, v) if extra is None else (q, k, v, extra)
            return getattr(torch.ops.decayfw, f"{rule}_step")(*args, state)
        seq = [t.unsqueeze(1) for t in (q, k, v)] + ([extra.unsqueeze(1)] if extra is not None else [])
        y, new_state = _run(rule, *seq[:3], seq[3] if extra is not None else None, state)
        state.copy_(new_state)
        return y[:, 0]


def add_step(q, k, v, state):
    """One token of the additive rule: q, k ``[B, H, M]``, v ``[B, H, D]``; ``state`` updated in place."""
    return _step("add", q, k, v, None, state)


def gated_step(q, k, v, g, state):
    """One token of the gated rule (``g`` logits ``[B, H]``); ``state`` updated in place."""
    return _step("gated", q, k, v, g, state)


def delta_step(q, k, v, beta, state):
    """One token of the delta rule (``beta`` logits ``[B, H]``); ``state`` updated in place."""
    return _step("delta", q, k, v, beta, state)
