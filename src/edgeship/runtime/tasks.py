"""Post-processing per task, registered by decorator and keyed by the Task enum.

>>> @register(Task.CLASSIFY)
... def classify(outputs, bundle, meta, top_k): ...
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..bundle import Bundle, Task

Decoder = Callable[..., Any]
_DECODERS: dict[Task, Decoder] = {}


def register(task: Task) -> Callable[[Decoder], Decoder]:
    def deco(fn: Decoder) -> Decoder:
        _DECODERS[task] = fn
        return fn

    return deco


def decoder_for(task: Task) -> Decoder:
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


@register(Task.CLASSIFY)
def classify(outputs: list[np.ndarray], bundle: Bundle, meta, top_k: int | None = None) -> dict[str, Any]:
    """Top-k classes with labels and probabilities for one sample's outputs."""
    logits = np.asarray(outputs[0]).reshape(-1)
    post = bundle.manifest.postprocessing
    apply = post.softmax if post.softmax is not None else not looks_like_probabilities(logits)
    probs = softmax(logits) if apply else logits.astype(np.float32)
    k = min(top_k or post.top_k, probs.size)
    idx = np.argpartition(-probs, k - 1)[:k]
    idx = idx[np.argsort(-probs[idx], kind="stable")]
    labels = bundle.labels
    return {
        "classes": [
            {
                "index": int(i),
                "label": labels[i] if labels is not None and i < len(labels) else str(int(i)),
                "score": float(probs[i]),
            }
            for i in idx
        ]
    }


from . import detect  # noqa: E402,F401  registers Task.DETECT
