"""Task decoders: a model's outputs for one sample to the answer (classes, boxes, raw tensors).

>>> from edgeship.runtime.decoders import decoder_for
>>> decoder_for(Task.DETECT)(outputs, bundle, meta, top_k=10)["detections"][0]["label"]
'car'

Imports only go one way: ``registry`` knows no decoder; ``classify`` and ``detect`` import the
registry and register into it; this package imports them so that they are registered.
"""

from . import classify, detect  # noqa: F401  each registers its task
from .detect import BoxDecoder, register_box_decoder
from .registry import decoder_for, looks_like_probabilities, raw, register, softmax

__all__ = ["BoxDecoder", "decoder_for", "looks_like_probabilities", "raw", "register", "register_box_decoder", "softmax"]
