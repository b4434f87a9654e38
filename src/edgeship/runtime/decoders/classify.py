"""Classification: top-k classes with labels and probabilities.

>>> decoder_for(Task.CLASSIFY)([logits], bundle, None, top_k=2)["classes"]
[{'index': 281, 'label': 'tabby', 'score': 0.62}, {'index': 285, 'label': 'Egyptian cat', 'score': 0.21}]
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ...bundle import Bundle, Task
from .registry import looks_like_probabilities, register, softmax


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
