"""Causal local (sliding-window) softmax attention with fairseq's self-attention calling convention:
the paper's Table 2 baseline (``--fw-rule local --fw-window 32``).

It is :class:`decayfw.nn.SoftmaxAttention` with a window (token t sees tokens t − W + 1 … t), time
first, with its key/value cache in ``incremental_state`` trimmed to the last W − 1 tokens, so a
generated token costs O(W) like a fast-weight step costs O(1). Projections have fairseq's names,
so a softmax-attention checkpoint loads into it strictly (legacy packed ``in_proj`` is split).
"""
from typing import Dict, Optional, Tuple

from torch import Tensor

from fairseq.incremental_decoding_utils import with_incremental_state

from decayfw.nn import SoftmaxAttention

from .attention_buffer import SelfAttentionBuffer
from .decay_attention import split_legacy_in_proj


@with_incremental_state
class FairseqLocalAttention(SelfAttentionBuffer, SoftmaxAttention):
    def __init__(self, embed_dim: int, num_heads: int, window: int):
        super().__init__(embed_dim, num_heads, time_first=True, window=window)
        self.self_attention = True

    def forward(self, query: Tensor, key: Optional[Tensor] = None, value: Optional[Tensor] = None,
                key_padding_mask: Optional[Tensor] = None,
                incremental_state: Optional[Dict[str, Dict[str, Optional[Tensor]]]] = None,
                need_weights: bool = True, static_kv: bool = False, attn_mask: Optional[Tensor] = None,
                before_softmax: bool = False, need_head_weights: bool = False) -> Tuple[Tensor, Optional[Tensor]]:
        if static_kv or before_softmax:
            raise ValueError("local attention is self-attention only (static_kv/before_softmax unsupported)")
        # attn_mask (fairseq's full causal mask) is replaced by this layer's own causal band.
        if incremental_state is None:
            out, _ = super().forward(query, key_padding_mask=key_padding_mask)
            return out, None
        buf = self._get_input_buffer(incremental_state)
        cache = (buf["prev_key"], buf["prev_value"]) if "prev_key" in buf else None
        out, (k, v) = super().forward(query, cache, key_padding_mask=key_padding_mask)
        buf["prev_key"], buf["prev_value"] = k, v
        self._set_input_buffer(incremental_state, buf)
        return out, None

    def upgrade_state_dict_named(self, state_dict: Dict[str, Tensor], name: str):
        split_legacy_in_proj(state_dict, name + "." if name else "")
