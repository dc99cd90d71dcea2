"""Layers: the paper's decaying fast-weight layer and the softmax-attention baseline.

Both share one interface so every comparison, benchmark and test can swap one for the other:

- ``forward(x, state=None, key_padding_mask=None) -> (out, new_state)`` over a whole sequence,
- ``step(x_t, state=None) -> (out_t, new_state)`` for one token,
- projections named ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` like fairseq's and
  ``torch.nn.MultiheadAttention``'s (after splitting ``in_proj``), so pre-trained weights load 1:1.

``x`` is ``[B, T, C]`` (``time_first=False``, default) or ``[T, B, C]`` (``time_first=True``,
fairseq's layout); time-first projections reach the op as transposed views, without copies.
"""
import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .ops import decay_fast_weights, decay_step
from .reference import state_dtype_for

__all__ = ["DecayFastWeights", "SoftmaxAttention", "uniform_gate_bias"]

FEATURE_MAPS = ("none", "linear", "relu")
# A gate logit whose σ is exactly 1.0 in fp32 and fp64: padded positions carry the state unchanged.
_CARRY_LOGIT = 50.0


def uniform_gate_bias(width: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """Uniform Gate Initialization (Gu et al., ICML 2020) of a gate bias of ``width`` channels.

    ``u ~ U[1/d, 1 − 1/d]``, ``b = −log(1/u − 1)``, so σ(b) = u and the initial memory times
    1/(1 − σ(b)) spread evenly from about 1 to about ``d`` tokens. For ``d`` ≤ 2 the interval is
    empty and u = 1/2 (b = 0).
    """
    if width <= 2:
        return torch.zeros(width)
    u = torch.rand(width, generator=generator, dtype=torch.float64) * (1 - 2 / width) + 1 / width
    return (-torch.log(1 / u - 1)).float()


class _Projections(nn.Module):
    """q/k/v/out projections shared by both layers (fairseq names)."""

    def __init__(self, embed_dim: int, num_heads: int, value_dim: Optional[int], bias: bool):
        super().__init__()
        if embed_dim <= 0 or num_heads <= 0:
            raise ValueError(f"embed_dim and num_heads must be positive, got {embed_dim} and {num_heads}")
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.head_dim = embed_dim // num_heads
        self.value_dim = value_dim if value_dim is not None else self.head_dim
        if self.value_dim <= 0:
            raise ValueError(f"value_dim must be positive, got {self.value_dim}")
        self.q_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.k_proj = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.v_proj = nn.Linear(embed_dim, num_heads * self.value_dim, bias=bias)
        self.out_proj = nn.Linear(num_heads * self.value_dim, embed_dim, bias=bias)

    def _check_x(self, x: Tensor, name: str = "x", rank: int = 3):
        if not isinstance(x, Tensor):
            raise TypeError(f"{type(self).__name__}: argument '{name}' must be a Tensor")
        if x.dim() != rank or x.shape[-1] != self.embed_dim:
            want = "[B, T, C]" if rank == 3 else "[B, C]"
            raise ValueError(f"{type(self).__name__}: argument '{name}' must have shape {want} with "
                             f"C = embed_dim = {self.embed_dim}, got {list(x.shape)}")

    def _heads(self, t: Tensor, time_first: bool) -> Tensor:
        """``[B, T, H·X]`` (or ``[T, B, H·X]``) → ``[B, T, H, X]`` view (transposed if time-first)."""
        t = t.view(t.shape[0], t.shape[1], self.num_heads, -1)
        return t.transpose(0, 1) if time_first else t

    def copy_projections_from(self, q_proj: nn.Linear, k_proj: nn.Linear, v_proj: nn.Linear, out_proj: nn.Linear):
        """Copies weights (and biases) of pre-trained projections exactly."""
        with torch.no_grad():
            for mine, theirs, name in ((self.q_proj, q_proj, "q_proj"), (self.k_proj, k_proj, "k_proj"),
                                       (self.v_proj, v_proj, "v_proj"), (self.out_proj, out_proj, "out_proj")):
                if mine.weight.shape != theirs.weight.shape:
                    raise ValueError(f"init_from_attention: '{name}' has weight {list(theirs.weight.shape)}, "
                                     f"expected {list(mine.weight.shape)}")
                mine.weight.copy_(theirs.weight)
                if mine.bias is not None:
                    if theirs.bias is None:
                        mine.bias.zero_()
                    else:
                        mine.bias.copy_(theirs.bias)


def _split_mha(mha: nn.MultiheadAttention):
    """q/k/v/out Linear modules equivalent to a ``torch.nn.MultiheadAttention`` (packed in_proj)."""
    E = mha.embed_dim
    if not mha._qkv_same_embed_dim:
        raise ValueError("init_from_attention: MultiheadAttention with kdim/vdim != embed_dim is not supported")
    lins = []
    for i in range(3):
        lin = nn.Linear(E, E, bias=mha.in_proj_bias is not None)
        with torch.no_grad():
            lin.weight.copy_(mha.in_proj_weight[i * E:(i + 1) * E])
            if mha.in_proj_bias is not None:
                lin.bias.copy_(mha.in_proj_bias[i * E:(i + 1) * E])
        lins.append(lin)
    return lins[0], lins[1], lins[2], mha.out_proj


class DecayFastWeights(_Projections):
    """Decaying fast weights (Mao 2022, Eqs. 7–8) as a drop-in replacement for self-attention.

    Per head: ``q = φ(W_q x)·s``, ``k = φ(W_k x)``, ``v = W_v x``, gate logits ``z = W_z x + b_z``
    (width D = value_dim) and ``f = W_f x + b_f`` (width M = key_dim), then
    ``S_t = (σ(z_t)σ(f_t)ᵀ) ⊙ S_{t-1} + v_t k_tᵀ``, ``y_t = S_t q_t``, ``out = W_o y``.

    Args:
        embed_dim: model dimension C.
        num_heads: H; head_dim = C / H.
        key_dim: M, the state's key dimension (paper's m). Default head_dim.
        value_dim: D per head. Default head_dim.
        feature_map: φ shared by q and k. ``"none"``: identity (requires key_dim == head_dim);
            ``"linear"``: a learned per-head projection head_dim → M; ``"relu"``: the learned
            projection followed by ReLU (Kasai et al. 2021), the paper's positive-feature baseline.
            Default: ``"none"`` when key_dim == head_dim, else ``"linear"``.
        bias: biases on q/k/v/out.
        scale_queries: multiply q by head_dim^-0.5 as softmax attention does, so a layer
            initialised from attention sees queries of the scale its keys were trained against.
        time_first: inputs are ``[T, B, C]`` (fairseq) instead of ``[B, T, C]``.
    """

    def __init__(self, embed_dim: int, num_heads: int, key_dim: Optional[int] = None,
                 value_dim: Optional[int] = None, feature_map: Optional[str] = None, bias: bool = True,
                 scale_queries: bool = True, time_first: bool = False):
        super().__init__(embed_dim, num_heads, value_dim, bias)
        self.key_dim = key_dim if key_dim is not None else self.head_dim
        if self.key_dim <= 0:
            raise ValueError(f"key_dim (m) must be positive, got {self.key_dim}")
        if feature_map is None:
            feature_map = "none" if self.key_dim == self.head_dim else "linear"
        if feature_map not in FEATURE_MAPS:
            raise ValueError(f"feature_map must be one of {FEATURE_MAPS}, got {feature_map!r}")
        if feature_map == "none" and self.key_dim != self.head_dim:
            raise ValueError(f"feature_map 'none' (identity) needs key_dim == head_dim ({self.head_dim}), got "
                             f"key_dim {self.key_dim}; use feature_map='linear' or 'relu' to project to m")
        self.feature_map = feature_map
        self.scaling = self.head_dim ** -0.5 if scale_queries else 1.0
        self.time_first = time_first
        H, D, M = num_heads, self.value_dim, self.key_dim
        if feature_map != "none":
            self.phi_weight = nn.Parameter(torch.empty(H, M, self.head_dim))
            self.phi_bias = nn.Parameter(torch.zeros(H, M))
        else:
            self.register_parameter("phi_weight", None)
            self.register_parameter("phi_bias", None)
        self.gate_z = nn.Linear(embed_dim, H * D)
        self.gate_f = nn.Linear(embed_dim, H * M)
        self.reset_feature_map()
        self.reset_gates()

    # -- initialisation -------------------------------------------------------------------------------

    def reset_feature_map(self):
        """φ's projection: Xavier-uniform per head (fan_in head_dim, fan_out M), zero bias."""
        if self.phi_weight is not None:
            bound = math.sqrt(6.0 / (self.head_dim + self.key_dim))
            with torch.no_grad():
                self.phi_weight.uniform_(-bound, bound)
                self.phi_bias.zero_()

    def reset_gates(self, generator: Optional[torch.Generator] = None):
        """Gate weights small (N(0, 0.02²)), gate biases by Uniform Gate Initialization per head."""
        H, D, M = self.num_heads, self.value_dim, self.key_dim
        with torch.no_grad():
            for lin in (self.gate_z, self.gate_f):
                lin.weight.normal_(0.0, 0.02, generator=generator)
            self.gate_z.bias.copy_(torch.cat([uniform_gate_bias(D, generator) for _ in range(H)]))
            self.gate_f.bias.copy_(torch.cat([uniform_gate_bias(M, generator) for _ in range(H)]))

    def value_rescale(self) -> Tensor:
        """``1 − σ(b_z)`` per value channel (``[H·D]``): the factor :meth:`init_from_attention` applies to W_v."""
        return 1.0 - torch.sigmoid(self.gate_z.bias.detach().float())

    def init_from_attention(self, q_proj: nn.Module, k_proj: Optional[nn.Linear] = None,
                            v_proj: Optional[nn.Linear] = None, out_proj: Optional[nn.Linear] = None,
                            generator: Optional[torch.Generator] = None) -> "DecayFastWeights":
        """Swap-then-finetune initialisation from a pre-trained softmax-attention layer.

        1. copies q/k/v/out projections exactly (pass a ``torch.nn.MultiheadAttention`` alone, or
           four ``nn.Linear``: fairseq's ``q_proj, k_proj, v_proj, out_proj``);
        2. draws the gate biases by Uniform Gate Initialization (:meth:`reset_gates`);
        3. rescales W_v and b_v row-wise by ``1 − σ(b_z)``, so that each state row starts as an
           exponential moving average with unit gain (its fixed point is v, not v/(1 − a)), keeping
           the swapped layer's output on the scale of attention's convex combinations and early
           fine-tuning from overflowing.
        """
        if isinstance(q_proj, nn.MultiheadAttention):
            q_proj, k_proj, v_proj, out_proj = _split_mha(q_proj)
        if k_proj is None or v_proj is None or out_proj is None:
            raise ValueError("init_from_attention: pass a MultiheadAttention or all of q_proj, k_proj, v_proj, out_proj")
        self.copy_projections_from(q_proj, k_proj, v_proj, out_proj)
        self.reset_gates(generator)
        self.rescale_values()
        return self

    def rescale_values(self):
        """W_v ← diag(1 − σ(b_z)) W_v and b_v ← (1 − σ(b_z)) ⊙ b_v (see :meth:`init_from_attention`)."""
        with torch.no_grad():
            scale = self.value_rescale().to(self.v_proj.weight.dtype)
            self.v_proj.weight.mul_(scale.unsqueeze(1))
            if self.v_proj.bias is not None:
                self.v_proj.bias.mul_(scale)

    # -- computation ----------------------------------------------------------------------------------

    def _phi(self, t: Tensor) -> Tensor:
        """Feature map on ``[B, T, H, head_dim]`` (or ``[B, H, head_dim]``) → ``[..., H, M]``."""
        if self.phi_weight is None:
            return t
        out = torch.einsum("...hd,hmd->...hm", t, self.phi_weight.to(t.dtype)) + self.phi_bias.to(t.dtype)
        return F.relu(out) if self.feature_map == "relu" else out

    def zero_state(self, batch_size: int, device=None, dtype=torch.float32) -> Tensor:
        """A zero state ``[B, H, D, M]`` (fp32; fp64 when the layer runs in fp64)."""
        return torch.zeros(batch_size, self.num_heads, self.value_dim, self.key_dim, device=device,
                           dtype=state_dtype_for(dtype))

    def _inputs(self, x: Tensor, time_first: bool):
        q = self._heads(self.q_proj(x) * self.scaling, time_first)
        k = self._heads(self.k_proj(x), time_first)
        v = self._heads(self.v_proj(x), time_first)
        z = self._heads(self.gate_z(x), time_first)
        f = self._heads(self.gate_f(x), time_first)
        return self._phi(q), self._phi(k), v, z, f

    def forward(self, x: Tensor, state: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """Whole sequence.

        Args:
            x: ``[B, T, C]`` (``[T, B, C]`` when ``time_first``).
            state: ``[B, H, D, M]`` from a previous segment, or None for zeros.
            key_padding_mask: ``[B, T]`` bool, True at padding. Padded positions neither write to
                the state nor decay it (their gates are exactly 1), so padding never changes it.

        Returns:
            ``(out, new_state)``: out like x; new_state ``[B, H, D, M]`` fp32 to carry on.
        """
        self._check_x(x)
        tf = self.time_first
        B = x.shape[1] if tf else x.shape[0]
        T = x.shape[0] if tf else x.shape[1]
        q, k, v, z, f = self._inputs(x, tf)
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (B, T):
                raise ValueError(f"{type(self).__name__}: argument 'key_padding_mask' must have shape [B, T] = "
                                 f"{[B, T]}, got {list(key_padding_mask.shape)}")
            pad = key_padding_mask.to(device=x.device, dtype=torch.bool)[:, :, None, None]  # [B, T, 1, 1]
            k = k.masked_fill(pad, 0.0)
            v = v.masked_fill(pad, 0.0)
            z = z.masked_fill(pad, _CARRY_LOGIT)
            f = f.masked_fill(pad, _CARRY_LOGIT)
        # Under autocast the projections may come out in different dtypes; the op takes one dtype
        # for its inputs and keeps the state in fp32 whatever it is.
        dtype = v.dtype
        q, k, z, f = (t.to(dtype) for t in (q, k, z, f))
        if state is not None:
            state = state.to(state_dtype_for(dtype))
        y, new_state = decay_fast_weights(q, k, v, z, f, initial_state=state, output_final_state=True)
        # y has v's strides: [B, T, H, D] (a transposed view of a contiguous [T, B, H, D] when time-first).
        y = (y.transpose(0, 1) if tf else y).reshape(T if tf else B, B if tf else T, -1)
        return self.out_proj(y), new_state

    def step(self, x_t: Tensor, state: Optional[Tensor] = None) -> Tuple[Tensor, Tensor]:
        """One token: ``x_t [B, C]``; ``state [B, H, D, M]`` is updated **in place** (zeros if None).

        O(1) in the context length. With autograd enabled it runs the differentiable whole-sequence
        op on T = 1 and returns a new state instead.
        """
        self._check_x(x_t, "x_t", rank=2)
        B = x_t.shape[0]
        q, k, v, z, f = self._inputs(x_t.unsqueeze(1), time_first=False)
        if state is None:
            state = self.zero_state(B, x_t.device, v.dtype)
        if torch.is_grad_enabled() and (x_t.requires_grad or any(p.requires_grad for p in self.parameters())):
            y, state = decay_fast_weights(q, k, v, z.to(v.dtype), f.to(v.dtype), initial_state=state,
                                          output_final_state=True)
            return self.out_proj(y.reshape(B, -1)), state
        q, k, v, z, f = (t[:, 0] for t in (q, k, v, z, f))
        y = decay_step(q, k, v.to(q.dtype), z.to(q.dtype), f.to(q.dtype), state)
        return self.out_proj(y.reshape(B, -1)), state

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, key_dim={self.key_dim}, "
                f"value_dim={self.value_dim}, feature_map={self.feature_map!r}, time_first={self.time_first}")


class SoftmaxAttention(_Projections):
    """Causal softmax attention with the same interface as :class:`DecayFastWeights`.

    The "state" is the KV cache ``(keys, values)``, each ``[B, H, T, head_dim]``: it grows by one
    token per :meth:`step`, which is exactly the O(T) cost per token that decay avoids.
    """

    def __init__(self, embed_dim: int, num_heads: int, bias: bool = True, time_first: bool = False):
        super().__init__(embed_dim, num_heads, None, bias)
        self.scaling = self.head_dim ** -0.5
        self.time_first = time_first

    def init_from_attention(self, q_proj, k_proj=None, v_proj=None, out_proj=None) -> "SoftmaxAttention":
        if isinstance(q_proj, nn.MultiheadAttention):
            q_proj, k_proj, v_proj, out_proj = _split_mha(q_proj)
        self.copy_projections_from(q_proj, k_proj, v_proj, out_proj)
        return self

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Optional[Tensor]) -> Tensor:
        # q [B, H, Tq, hd], k/v [B, H, Tk, hd]; mask [.., Tq, Tk] bool, True = may attend
        scores = torch.matmul(q * self.scaling, k.transpose(-1, -2))
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        # softmax in at least fp32 (16-bit scores would lose the small weights); fp64 stays fp64
        low = scores.dtype in (torch.float16, torch.bfloat16)
        return torch.matmul(torch.softmax(scores.float() if low else scores, dim=-1).to(v.dtype), v)

    def forward(self, x: Tensor, state: Optional[Tuple[Tensor, Tensor]] = None,
                key_padding_mask: Optional[Tensor] = None) -> Tuple[Tensor, Tuple[Tensor, Tensor]]:
        """Whole sequence; ``state`` is a KV cache from a previous segment. Returns (out, new cache)."""
        self._check_x(x)
        tf = self.time_first
        B = x.shape[1] if tf else x.shape[0]
        T = x.shape[0] if tf else x.shape[1]
        q, k, v = (self._heads(p(x), tf).transpose(1, 2) for p in (self.q_proj, self.k_proj, self.v_proj))
        if state is not None:
            k = torch.cat([state[0], k], dim=2)
            v = torch.cat([state[1], v], dim=2)
        P = k.shape[2] - T
        mask = torch.ones(T, P + T, dtype=torch.bool, device=x.device).tril(P)
        if key_padding_mask is not None:
            if tuple(key_padding_mask.shape) != (B, T):
                raise ValueError(f"SoftmaxAttention: argument 'key_padding_mask' must have shape [B, T] = {[B, T]}, "
                                 f"got {list(key_padding_mask.shape)}")
            keep = torch.cat([torch.ones(B, P, dtype=torch.bool, device=x.device), ~key_padding_mask.bool()], dim=1)
            mask = mask[None, None] & keep[:, None, None, :]
            # a padded query may see nothing at all; let it see itself to stay finite
            own = torch.zeros(T, P + T, dtype=torch.bool, device=x.device)
            own[torch.arange(T), P + torch.arange(T)] = True
            mask = mask | own[None, None]
        y = self._attend(q, k, v, mask).transpose(1, 2)  # [B, T, H, hd]
        y = (y.transpose(0, 1) if tf else y).reshape(T if tf else B, B if tf else T, -1)
        return self.out_proj(y), (k, v)

    def step(self, x_t: Tensor, state: Optional[Tuple[Tensor, Tensor]] = None):
        """One token against the cache; returns ``(out_t, (keys, values))`` with the token appended."""
        self._check_x(x_t, "x_t", rank=2)
        B = x_t.shape[0]
        q, k, v = (p(x_t).view(B, self.num_heads, 1, -1) for p in (self.q_proj, self.k_proj, self.v_proj))
        if state is not None:
            k = torch.cat([state[0], k], dim=2)
            v = torch.cat([state[1], v], dim=2)
        y = self._attend(q, k, v, None).reshape(B, -1)
        return self.out_proj(y), (k, v)
