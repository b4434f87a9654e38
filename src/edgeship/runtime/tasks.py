"""Moved to ``edgeship.runtime.decoders`` (registry, classify); these names still import from here.

>>> from edgeship.runtime.decoders import decoder_for, register
"""

from .decoders.classify import classify
from .decoders.registry import Decoder, decoder_for, looks_like_probabilities, raw, register, softmax

__all__ = ["Decoder", "classify", "decoder_for", "looks_like_probabilities", "raw", "register", "softmax"]
