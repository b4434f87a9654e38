"""The decoder of each task (a model's outputs to an answer), registered by decorator, keyed by Task.

>>> @register(Task.CLASSIFY)
... def classify(outputs, bundle, meta, top_k=None): ...
>>> decoder_for(Task.CLASSIFY)([logits[0]], bundle, meta, top_k=3)
{'classes': [{'index': 7, 'label': 'tabby', 'score': 0.81}, ...]}

This module imports no decoder; the package's ``__init__`` imports each one so that it registers.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ...bundle import Bundle, Task
from ...util import Registry

Decoder = Callable[..., Any]
_DECODERS: Registry[Task, Decoder] = Registry("decoder for the task")
register = _DECODERS.register


def decoder_for(task: Task) -> Decoder:
    """The decoder registered for ``task``; tasks without one answer their raw outputs."""
    return _DECODERS.get(task, raw)


def raw(outputs: list[np.ndarray], bundle: Bundle, meta, **_: Any) -> dict[str, Any]:
    """Tasks without a decoder answer their output tensors as nested lists."""
    return {"outputs": [o.tolist() for o in outputs]}


def softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32, copy=False)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def looks_like_probabilities(row: np.ndarray) -> bool:
    return bool(row.min() >= 0.0 and abs(float(row.sum()) - 1.0) < 1e-3)
