"""A bundle loaded into ONNX Runtime: preprocess, run, decode, with the time of each stage.

>>> model = Model.load("effnet-lite0/")                      # or a .tar, or a bare .onnx
>>> result = model.predict("cat.jpg")
>>> result.output["classes"][0]["label"], result.timing_ms
('tabby', {'decode': 1.9, 'preprocess': 0.6, 'infer': 6.1, 'postprocess': 0.04})
>>> [r.output for r in model.predict_batch(["a.jpg", "b.png"], batch_size=8)]
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Sequence, Union

import numpy as np

from ..bundle import Bundle, Format, open_bundle
from ..errors import BundleError, InputError
from .preprocess import ImageMeta, ImageSource, Preprocessor
from .session import RuntimeConfig, create_session
from .tasks import decoder_for


@dataclass
class Prediction:
    output: dict[str, Any]
    timing_ms: dict[str, float] = field(default_factory=dict)
    meta: Union[ImageMeta, None] = None


@dataclass(frozen=True)
class GoldenCheck:
    ok: bool
    max_abs_error: float
    tolerance: str


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


class Model:
    """An ONNX Runtime session plus the bundle that says how to feed and read it."""

    def __init__(self, bundle: Bundle, config: RuntimeConfig | None = None):
        if bundle.manifest.format is not Format.ONNX:
            raise BundleError(
                f"{bundle.source}: format '{bundle.manifest.format.value}' is not run by the ONNX runtime; "
                "use `edgeship llm` for .gguf models"
            )
        self.bundle = bundle
        self.config = config or RuntimeConfig()
        t0 = time.perf_counter()
        self.session = create_session(bundle.model_path, self.config)
        self.load_ms = _ms(t0)
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.input_shape = list(first.shape)
        self.input_dtype = np.float16 if first.type == "tensor(float16)" else np.float32
        self.output_names = [o.name for o in self.session.get_outputs()]
        pre = bundle.manifest.preprocessing
        self.preprocessor = Preprocessor(pre) if pre is not None else None
        self._decode = decoder_for(bundle.manifest.task)

    @classmethod
    def load(cls, path: Union[str, os.PathLike, Bundle], config: RuntimeConfig | None = None, verify: bool = True) -> "Model":
        bundle = path if isinstance(path, Bundle) else open_bundle(path, verify=verify)
        return cls(bundle, config)

    @property
    def name(self) -> str:
        return self.bundle.name

    @property
    def dynamic_batch(self) -> bool:
        return not isinstance(self.input_shape[0], int) if self.input_shape else False

    @property
    def max_batch(self) -> int | None:
        """None when any batch size is accepted, else the fixed batch the graph was exported with."""
        return None if self.dynamic_batch else int(self.input_shape[0])

    def run(self, batch: np.ndarray, session: Any = None) -> list[np.ndarray]:
        """Run raw input ``batch`` ([N, ...] float32); returns the output arrays.

        ``session``: another session of the same model file to run it on (see ``twin_session``).
        """
        if batch.dtype != self.input_dtype:
            batch = batch.astype(self.input_dtype)
        try:
            return (session or self.session).run(self.output_names, {self.input_name: batch})
        except Exception as exc:  # ORT InvalidArgument / RuntimeException
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise InputError(
                f"the model rejected an input of shape {list(batch.shape)} {batch.dtype} "
                f"(it expects {self.input_shape}): {first[:200]}"
            ) from exc

    def twin_session(self, config: RuntimeConfig):
        """A second ONNX Runtime session of this model with other settings (its own copy of the weights)."""
        return create_session(self.bundle.model_path, config)

    def prepare(self, src: ImageSource | np.ndarray) -> tuple[np.ndarray, ImageMeta | None, dict[str, float]]:
        """One sample's input tensor (no batch axis), its image meta, and decode/preprocess times."""
        if isinstance(src, np.ndarray) and src.dtype != np.uint8:
            expected = self.input_shape[1:]
            if src.ndim == len(self.input_shape):  # already has a batch axis of 1
                src = src[0] if src.shape[0] == 1 else src
            if src.ndim != len(expected) or any(
                isinstance(d, int) and d != s for d, s in zip(expected, src.shape)
            ):
                raise InputError(f"an input array must have shape {expected} (without the batch axis); got {list(src.shape)}")
            return src.astype(self.input_dtype, copy=False), None, {}
        if self.preprocessor is None:
            raise InputError(
                f"{self.name}: this bundle has no image preprocessing; give input arrays of shape {self.input_shape}"
            )
        t0 = time.perf_counter()
        image = self.preprocessor.image(src)
        t1 = time.perf_counter()
        x, meta = self.preprocessor.from_image(image)
        return x, meta, {"decode": (t1 - t0) * 1e3, "preprocess": _ms(t1)}

    def predict(self, src: ImageSource | np.ndarray, top_k: int | None = None) -> Prediction:
        x, meta, timing = self.prepare(src)
        t0 = time.perf_counter()
        outputs = self.run(x[None])
        timing["infer"] = _ms(t0)
        t1 = time.perf_counter()
        out = self._decode([o[0] for o in outputs], self.bundle, meta, top_k=top_k)
        timing["postprocess"] = _ms(t1)
        return Prediction(out, timing, meta)

    def predict_batch(self, sources: Sequence[ImageSource | np.ndarray], batch_size: int = 8,
                      top_k: int | None = None) -> list[Prediction]:
        """Predict many inputs, stacking up to ``batch_size`` per run when the graph's batch axis is dynamic."""
        if batch_size < 1:
            raise InputError(f"batch_size must be at least 1, got {batch_size}")
        step = batch_size if self.dynamic_batch else (self.max_batch or 1)
        results: list[Prediction] = []
        for start in range(0, len(sources), step):
            chunk = sources[start : start + step]
            prepared = [self.prepare(s) for s in chunk]
            t0 = time.perf_counter()
            outputs = self.run(np.stack([p[0] for p in prepared]))
            infer = _ms(t0)
            for i, (_, meta, timing) in enumerate(prepared):
                t1 = time.perf_counter()
                out = self._decode([o[i] for o in outputs], self.bundle, meta, top_k=top_k)
                timing.update(infer=infer / len(chunk), postprocess=_ms(t1))
                results.append(Prediction(out, timing, meta))
        return results

    def check_golden(self) -> GoldenCheck | None:
        """Run the bundle's golden input and compare with its stored output (None when it has none)."""
        golden = self.bundle.golden()
        if golden is None:
            return None
        x, expected = golden
        got = self.run(x)[0]
        g = self.bundle.manifest.golden
        err = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64)))) if got.size else 0.0
        ok = got.shape == expected.shape and bool(np.allclose(got, expected, atol=g.atol, rtol=g.rtol))
        return GoldenCheck(ok, err, f"atol={g.atol} rtol={g.rtol}")
