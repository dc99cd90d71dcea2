from .decay_attention import FairseqDecayFastWeights
from .decay_decoder_layer import DecayTransformerDecoderLayer

__all__ = ["FairseqDecayFastWeights", "DecayTransformerDecoderLayer"]
