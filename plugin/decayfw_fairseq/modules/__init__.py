from .decay_attention import FairseqDecayFastWeights
from .decay_decoder_layer import DecayTransformerDecoderLayer
from .streaming import carry_state, decay_layers

__all__ = ["FairseqDecayFastWeights", "DecayTransformerDecoderLayer", "carry_state", "decay_layers"]
