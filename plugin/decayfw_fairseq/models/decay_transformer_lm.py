"""``decay_transformer_lm``: fairseq's ``transformer_lm`` with decaying fast weights in place of
self-attention (or, with ``--fw-rule``, one of the paper's baselines: gated, add, delta, local).

Everything but the self-attention is fairseq's own ``transformer_lm`` (embeddings, adaptive
input/softmax, positions, layer norms, FFN), so a softmax-attention checkpoint loads strictly:
``--finetune-from-model base/checkpoint.pt`` fills the gate and feature-map parameters it lacks
through ``upgrade_state_dict_named`` (Uniform Gate Initialization, W_v rescaled by 1 − σ(b_z)).

New hyper-parameters are ``fw_*`` fields of the config dataclass: fairseq silently drops fields a
model's dataclass does not declare, and ``decoder_*`` names are redirected to its sub-configs.
"""
import argparse
import logging
from dataclasses import dataclass, field
from typing import Any, Dict

from fairseq.dataclass import ChoiceEnum
from fairseq.models import register_model, register_model_architecture
from fairseq.models.transformer import TransformerConfig, TransformerDecoder
from fairseq.models.transformer_lm import (
    TransformerLanguageModel,
    TransformerLanguageModelConfig,
    base_lm_architecture,
    transformer_lm_baevski_wiki103,
    transformer_lm_gpt2_small,
)
from fairseq.modules.checkpoint_activations import checkpoint_wrapper
from fairseq.utils import safe_getattr

from decayfw.nn import check_rule_options

from ..modules.decay_decoder_layer import DecayTransformerDecoderLayer
from ..modules.growing_positions import use_growing_positions

logger = logging.getLogger(__name__)

FEATURE_MAP_CHOICES = ChoiceEnum(["auto", "none", "linear", "relu"])
GATE_INIT_CHOICES = ChoiceEnum(["ugi"])
RULE_CHOICES = ChoiceEnum(["decay", "gated", "add", "delta", "local"])
NORMALIZATION_CHOICES = ChoiceEnum(["none", "attention", "sum"])


@dataclass
class DecayTransformerLanguageModelConfig(TransformerLanguageModelConfig):
    fw_rule: RULE_CHOICES = field(
        default="decay", metadata={"help": "the self-attention replacement: decay (the paper's, Eq. 7), gated "
                                           "(Peng et al. 2021, Eq. 5), add (Katharopoulos et al. 2020, Eq. 3), delta "
                                           "(Schlag et al. 2021, Eq. 6), or local (causal softmax attention over the "
                                           "last --fw-window tokens)"})
    fw_normalization: NORMALIZATION_CHOICES = field(
        default="none", metadata={"help": "none; attention (a normaliser z_t beside the state, y = S q / z^T q; add, "
                                          "gated, decay; needs --fw-feature-map relu); sum (q, k divided by the sum "
                                          "of their features; delta; needs relu)"})
    fw_window: int = field(
        default=0, metadata={"help": "tokens each query sees (itself included) for --fw-rule local"})
    fw_value_scale: float = field(
        default=0.0, metadata={"help": "factor on W_v when swapping from attention, besides decay's 1 - sigmoid(b_z) "
                                       "(0: automatic, 1/512 for --fw-rule add without a relu feature map as in the "
                                       "paper's footnote 4, else 1)"})
    fw_key_dim: int = field(
        default=0, metadata={"help": "m, the key/state dimension of each head's fast-weight matrix "
                                     "(0: the head dimension)"})
    fw_feature_map: FEATURE_MAP_CHOICES = field(
        default="auto", metadata={"help": "feature map on queries and keys: none (identity, needs m = head dim), "
                                          "linear (learned per-head projection to m), relu (learned projection + "
                                          "ReLU, Kasai et al. 2021); auto: none if m = head dim else linear"})
    fw_gate_init: GATE_INIT_CHOICES = field(
        default="ugi", metadata={"help": "initialisation of the gate biases: ugi = Uniform Gate Initialization "
                                         "(Gu et al. 2020)"})
    fw_no_value_rescale: bool = field(
        default=False, metadata={"help": "when swapping from attention, do not rescale W_v by 1 - sigmoid(b_z)"})
    fw_no_query_scaling: bool = field(
        default=False, metadata={"help": "do not scale queries by head_dim^-0.5 (attention's scaling)"})
    fw_recompute_chunk_states: bool = field(
        default=False, metadata={"help": "decay rule on the CUDA chunk path: recompute the chunk-boundary states in "
                                         "the backward instead of keeping the forward's (saves fp32 "
                                         "(T/C + 1)*D*m per sequence, head and layer; costs one serial pass; same "
                                         "gradients)"})


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (0 = the head dimension), got {value}")
    return value


def fw_options(args) -> Dict[str, Any]:
    """The layer options from the model args (Namespace or DictConfig), validated: a combination that
    is not one of the paper's layers is refused with a message naming the flags."""
    heads = safe_getattr(args, "decoder_attention_heads")
    embed = safe_getattr(args, "decoder_embed_dim")
    if embed % heads != 0:
        raise ValueError(f"--decoder-embed-dim ({embed}) must be divisible by --decoder-attention-heads ({heads})")
    head_dim = embed // heads
    key_dim = safe_getattr(args, "fw_key_dim", 0) or head_dim
    if key_dim < 0:
        raise ValueError(f"--fw-key-dim must be >= 0 (0 = the head dimension {head_dim}), got {key_dim}")
    rule = str(safe_getattr(args, "fw_rule", "decay"))
    normalization = str(safe_getattr(args, "fw_normalization", "none"))
    window = safe_getattr(args, "fw_window", 0) or 0
    value_scale = safe_getattr(args, "fw_value_scale", 0.0) or 0.0
    if value_scale < 0:
        raise ValueError(f"--fw-value-scale must be > 0 (or 0 for automatic), got {value_scale}")
    feature_map = str(safe_getattr(args, "fw_feature_map", "auto"))
    if rule == "local":
        if window < 1:
            raise ValueError(f"--fw-rule local needs --fw-window >= 1 (tokens each query sees), got {window}")
        if normalization != "none" or feature_map not in ("auto", "none") or safe_getattr(args, "fw_key_dim", 0):
            raise ValueError("--fw-rule local is softmax attention: --fw-normalization, --fw-feature-map and "
                             "--fw-key-dim do not apply to it")
        return {"rule": "local", "window": window}
    if window:
        raise ValueError(f"--fw-window applies to --fw-rule local only, got --fw-window {window} with "
                         f"--fw-rule {rule}")
    if feature_map == "auto":
        feature_map = "none" if key_dim == head_dim else "linear"
    check_rule_options(rule, feature_map, normalization, key_dim, head_dim, flag_prefix="--fw-")
    return {"rule": rule, "key_dim": key_dim, "feature_map": feature_map, "normalization": normalization,
            "value_scale": value_scale or None,
            "rescale_values": not safe_getattr(args, "fw_no_value_rescale", False),
            "scale_queries": not safe_getattr(args, "fw_no_query_scaling", False),
            "save_chunk_states": not safe_getattr(args, "fw_recompute_chunk_states", False)}


class DecayTransformerDecoder(TransformerDecoder):
    """fairseq's decoder with one builder overridden: each layer is a DecayTransformerDecoderLayer.
    Its sinusoidal positions grow by doubling, so a generated token costs the same at any context."""

    def __init__(self, args, dictionary, embed_tokens, no_encoder_attn=False, output_projection=None):
        super().__init__(args, dictionary, embed_tokens, no_encoder_attn=no_encoder_attn,
                         output_projection=output_projection)
        use_growing_positions(self)

    def build_decoder_layer(self, cfg, no_encoder_attn=False):
        cfg = TransformerConfig.from_namespace(cfg)
        layer = DecayTransformerDecoderLayer(cfg, fw_options(self.args), no_encoder_attn=no_encoder_attn)
        if cfg.checkpoint_activations:
            layer = checkpoint_wrapper(layer, offload_to_cpu=cfg.offload_activations)
        return layer


@register_model("decay_transformer_lm", dataclass=DecayTransformerLanguageModelConfig)
class DecayTransformerLanguageModel(TransformerLanguageModel):
    @classmethod
    def hub_models(cls):
        return {}

    @classmethod
    def add_args(cls, parser):
        super().add_args(parser)
        # argparse-level validation, so a bad value is a usage error and not a traceback in a layer
        for action in parser._actions:
            if "--fw-key-dim" in action.option_strings:
                action.type = _positive_int

    @classmethod
    def build_model(cls, args, task):
        fw_options(args)  # validate before building anything
        # fairseq's builder makes the embeddings (adaptive input, tied softmax) and an attention
        # decoder; keep its embeddings and build the decoder again with decay layers.
        base = TransformerLanguageModel.build_model(args, task)
        embed_tokens = base.decoder.embed_tokens
        decoder = DecayTransformerDecoder(args, task.target_dictionary, embed_tokens, no_encoder_attn=True)
        return cls(decoder)


def _fw_defaults(args):
    args.fw_rule = safe_getattr(args, "fw_rule", "decay")
    args.fw_normalization = safe_getattr(args, "fw_normalization", "none")
    args.fw_window = safe_getattr(args, "fw_window", 0)
    args.fw_value_scale = safe_getattr(args, "fw_value_scale", 0.0)
    args.fw_key_dim = safe_getattr(args, "fw_key_dim", 0)
    args.fw_feature_map = safe_getattr(args, "fw_feature_map", "auto")
    args.fw_gate_init = safe_getattr(args, "fw_gate_init", "ugi")
    args.fw_no_value_rescale = safe_getattr(args, "fw_no_value_rescale", False)
    args.fw_no_query_scaling = safe_getattr(args, "fw_no_query_scaling", False)
    args.fw_recompute_chunk_states = safe_getattr(args, "fw_recompute_chunk_states", False)


@register_model_architecture("decay_transformer_lm", "decay_transformer_lm_base")
def decay_transformer_lm_base(args):
    _fw_defaults(args)
    base_lm_architecture(args)


@register_model_architecture("decay_transformer_lm", "decay_transformer_lm_wiki103")
def decay_transformer_lm_wiki103(args):
    """Baevski & Auli (2019): 16 layers, 1024 dim, 8 heads (head dim 128), adaptive input/softmax."""
    _fw_defaults(args)
    transformer_lm_baevski_wiki103(args)


@register_model_architecture("decay_transformer_lm", "decay_transformer_lm_gpt2_small")
def decay_transformer_lm_gpt2_small(args):
    """GPT-2 small shapes: 24 layers, 1024 dim, 16 heads (fairseq's transformer_lm_gpt2_small)."""
    _fw_defaults(args)
    transformer_lm_gpt2_small(args)


@register_model_architecture("decay_transformer_lm", "decay_transformer_lm_tiny")
def decay_transformer_lm_tiny(args):
    """For tests and demos: 2 layers, 64 dim, 4 heads."""
    _fw_defaults(args)
    args.decoder_layers = safe_getattr(args, "decoder_layers", 2)
    args.decoder_embed_dim = safe_getattr(args, "decoder_embed_dim", 64)
    args.decoder_ffn_embed_dim = safe_getattr(args, "decoder_ffn_embed_dim", 128)
    args.decoder_attention_heads = safe_getattr(args, "decoder_attention_heads", 4)
    base_lm_architecture(args)
