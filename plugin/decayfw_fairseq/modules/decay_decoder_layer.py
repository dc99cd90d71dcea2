"""A fairseq Transformer decoder layer whose self-attention is fast weights (decay or another rule of
the paper) or, for the Table 2 baseline, local attention.

Overrides one builder, ``build_self_attention``; everything else (layer norms, FFN, dropout,
residuals, pre/post-norm) is fairseq's own, so base-checkpoint keys line up one to one.
"""
from typing import Any, Dict

from fairseq.modules.transformer_layer import TransformerDecoderLayerBase

from .decay_attention import FairseqFastWeights
from .local_attention import FairseqLocalAttention


class DecayTransformerDecoderLayer(TransformerDecoderLayerBase):
    def __init__(self, cfg, fw_options: Dict[str, Any], no_encoder_attn: bool = True,
                 add_bias_kv: bool = False, add_zero_attn: bool = False):
        # Read by build_self_attention, which the base __init__ calls.
        self._fw_options = dict(fw_options)
        super().__init__(cfg, no_encoder_attn=no_encoder_attn, add_bias_kv=add_bias_kv, add_zero_attn=add_zero_attn)

    def build_self_attention(self, embed_dim, cfg, add_bias_kv=False, add_zero_attn=False):
        o = self._fw_options
        if o.get("rule") == "local":
            return FairseqLocalAttention(embed_dim, cfg.decoder.attention_heads, window=o["window"])
        return FairseqFastWeights(
            embed_dim, cfg.decoder.attention_heads, rule=o.get("rule", "decay"),
            key_dim=o.get("key_dim"), feature_map=o.get("feature_map"),
            normalization=o.get("normalization", "none"), value_scale=o.get("value_scale"),
            rescale_values=o.get("rescale_values", True), scale_queries=o.get("scale_queries", True),
            save_chunk_states=o.get("save_chunk_states", True))
