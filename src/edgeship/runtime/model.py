"""A bundle loaded into a backend: prepare, run, finish, with the time of each stage.

>>> model = Model.load("effnet-lite0/")                      # or a .tar, or a bare .onnx
>>> result = model.predict("cat.jpg")
>>> result.output["classes"][0]["label"], result.timing_ms
('tabby', {'decode': 1.9, 'preprocess': 0.6, 'infer': 6.1, 'postprocess': 0.04})
>>> [r.output for r in model.predict_batch(["a.jpg", "b.png"], batch_size=8)]

The same, one stage at a time (what the server does, batching the middle step):

>>> p = model.prepare(jpeg_bytes)                  # decode + preprocess: Prepared(x, meta, timing)
>>> outputs = model.run(p.x[None])                 # a batch through the backend
>>> model.finish([o[0] for o in outputs], p.meta, top_k=3)
>>> fewer = model.derive(intra_op_threads=1)       # the same bundle in a new session
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Sequence, Union

import numpy as np

from ..bundle import Bundle, Format, Task, TensorSpec, Variant, open_bundle
from ..errors import BackendError, BundleError, InputError
from .backends import BackendKind, backend_class
from .config import RuntimeConfig
from .decoders import decoder_for
from .preprocess import DEFAULT_MAX_DECODE_BYTES, DEFAULT_MAX_PIXELS, ImageMeta, ImageSource, Preprocessor

# The engine a model file calls for when the config names none.
_DEFAULT_BACKEND = {Format.ONNX: BackendKind.ONNXRUNTIME, Format.TFLITE: BackendKind.LITERT}


@dataclass
class Prediction:
    output: dict[str, Any]
    timing_ms: dict[str, float] = field(default_factory=dict)
    meta: Union[ImageMeta, None] = None


class Prepared(NamedTuple):
    """One sample ready to run: its tensor (no batch axis, the input's dtype), image meta, stage times."""

    x: np.ndarray
    meta: Union[ImageMeta, None]
    timing: dict[str, float]


@dataclass(frozen=True)
class GoldenCheck:
    ok: bool
    max_abs_error: float
    tolerance: str


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


class Model:
    """A backend session plus the bundle that says how to feed it and read its outputs.

    ``max_pixels`` and ``max_decode_bytes`` bound the pictures ``prepare`` decodes (checked from
    the header: pixels, and the bytes decoding them will allocate); they are fixed for the
    model's life, like the runtime config.
    """

    def __init__(self, bundle: Bundle, config: RuntimeConfig | None = None, *,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, max_decode_bytes: int | None = DEFAULT_MAX_DECODE_BYTES):
        config = config or RuntimeConfig()
        if max_pixels is not None and (not isinstance(max_pixels, int) or isinstance(max_pixels, bool) or max_pixels < 1):
            raise InputError(f"max_pixels: expected a positive integer or None, got {max_pixels!r}")
        variant = bundle.manifest.variant(config.variant) if config.variant else None
        config = _resolve(bundle, config, variant)
        kind = config.backend
        assert kind is not None  # _resolve settles the backend
        self._kind: BackendKind = kind
        model_path = bundle.root / variant.model if variant else bundle.model_path
        backend_cls = backend_class(kind)
        if backend_cls.suffixes and model_path.suffix.lower() not in backend_cls.suffixes:
            fmt = bundle.manifest.format
            hint = "; use `edgeship llm` for .gguf models" if fmt is Format.GGUF else ""
            raise BundleError(
                f"{bundle.source}: {model_path.name} is not run by the {kind.value} backend "
                f"(it reads {', '.join(backend_cls.suffixes)} files){hint}"
            )
        if variant is not None and (variant.preprocessing is not None or variant.postprocessing is not None):
            # the bundle as this variant sees it: its own input preparation and output decoding
            m = bundle.manifest
            view = dataclasses.replace(m, preprocessing=variant.preprocessing or m.preprocessing,
                                       postprocessing=variant.postprocessing or m.postprocessing)
            bundle = Bundle(bundle.root, view, assumed=bundle.assumed, source=bundle.source)
        self.bundle = bundle
        self.config = config
        if max_decode_bytes is not None and (not isinstance(max_decode_bytes, int) or isinstance(max_decode_bytes, bool)
                                             or max_decode_bytes < 1):
            raise InputError(f"max_decode_bytes: expected a positive integer or None, got {max_decode_bytes!r}")
        self.variant: Variant | None = variant
        self._max_pixels = max_pixels
        self._max_decode_bytes = max_decode_bytes
        t0 = time.perf_counter()
        self._backend = backend_cls(model_path, config)
        self.load_ms = _ms(t0)
        spec = self._backend.inputs[0]
        try:
            self._input_dtype = np.dtype(spec.dtype)
        except TypeError:
            self._backend.close()
            raise BundleError(f"{bundle.source}: input {spec.name!r} has type {spec.dtype}, which edgeship cannot feed") from None
        pre = bundle.manifest.preprocessing
        self._preprocessor = Preprocessor(pre, max_pixels, max_decode_bytes) if pre is not None else None
        self._decode = decoder_for(bundle.manifest.task)
        self.golden_at_load: GoldenCheck | None = None
        if _check_at_load(config, variant):
            self._refuse_unless_golden()

    def _refuse_unless_golden(self) -> None:
        """The golden check at load: a backend that disagrees beyond the tolerance is closed and refused."""
        try:
            check = self.check_golden()
        except Exception:
            self._backend.close()
            raise
        self.golden_at_load = check
        if check is not None and not check.ok:
            self._backend.close()
            what = self.describe_short()
            raise BackendError(
                f"{self.bundle.name}: {what} is refused: its output on the golden input differs from the "
                f"bundle's by up to {check.max_abs_error:.3g} ({check.tolerance})"
                + ("" if self.variant is None else "; the variant's gate admitted it within this tolerance")
            )

    @classmethod
    def load(cls, path: Union[str, os.PathLike, Bundle], config: RuntimeConfig | None = None, verify: bool = True, *,
             max_pixels: int | None = DEFAULT_MAX_PIXELS,
             max_decode_bytes: int | None = DEFAULT_MAX_DECODE_BYTES) -> "Model":
        bundle = path if isinstance(path, Bundle) else open_bundle(path, verify=verify)
        return cls(bundle, config, max_pixels=max_pixels, max_decode_bytes=max_decode_bytes)

    def derive(self, **runtime_changes: Any) -> "Model":
        """The same bundle in a new session with ``runtime_changes`` applied to the config.

        >>> model.derive(intra_op_threads=1, allow_spinning=True)

        A change given as None means the engine's default. The bundle is shared, not re-read.
        """
        return Model(self.bundle, self.config.with_changes(**runtime_changes), max_pixels=self._max_pixels,
                     max_decode_bytes=self._max_decode_bytes)

    # --- what the model is -------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.bundle.name

    @property
    def version(self) -> str:
        return self.bundle.manifest.version

    @property
    def task(self) -> Task:
        return self.bundle.manifest.task

    @property
    def inputs(self) -> list[TensorSpec]:
        """The graph's inputs as the backend reports them (the first one is fed)."""
        return list(self._backend.inputs)

    @property
    def outputs(self) -> list[TensorSpec]:
        """The graph's outputs, in the order ``run`` returns them."""
        return list(self._backend.outputs)

    @property
    def input_shape(self) -> list:
        return list(self._backend.inputs[0].shape)

    @property
    def input_dtype(self) -> np.dtype:
        return self._input_dtype

    @property
    def dynamic_batch(self) -> bool:
        return self._backend.inputs[0].dynamic_batch

    @property
    def max_batch(self) -> int | None:
        """None when any batch size is accepted, else the fixed batch the graph was exported with."""
        shape = self._backend.inputs[0].shape
        return None if self.dynamic_batch or not shape or shape[0] is None else int(shape[0])

    @property
    def takes_images(self) -> bool:
        """Whether ``prepare`` decodes pictures (the bundle has preprocessing), not only arrays."""
        return self._preprocessor is not None

    @property
    def max_pixels(self) -> int | None:
        return self._max_pixels

    @property
    def max_decode_bytes(self) -> int | None:
        return self._max_decode_bytes

    @property
    def backend(self) -> BackendKind:
        return self._kind

    @property
    def session(self):
        """ONNX Runtime's own session, for code that measures ONNX Runtime itself (fit, bench)."""
        session = getattr(self._backend, "session", None)
        if session is None:
            raise AttributeError(f"the {self.backend.value} backend has no ONNX Runtime session")
        return session

    def describe(self) -> dict[str, Any]:
        """What actually runs this model: backend, version, providers, threads, options (JSON-safe)."""
        info = dict(self._backend.describe())
        info.setdefault("options", dict(self.config.options))
        info["variant"] = self.variant.name if self.variant else None
        if self.variant is not None:
            info.setdefault("precision", self.variant.precision)
        return info

    def describe_short(self) -> str:
        """One line: engine, version, where it runs, precision, threads (for table footers)."""
        d = self.describe()
        where = ", ".join(d.get("providers") or [d.get("device") or ""]).strip(", ")
        parts = [f"{d['backend']} {d.get('version', '')}".strip()]
        if where:
            parts.append(where)
        if d.get("variant"):
            parts.append(f"variant {d['variant']}")
        if d.get("precision"):
            parts.append(str(d["precision"]))
        threads = d.get("intra_op_threads", d.get("threads"))
        parts.append(f"{threads if threads is not None else 'default'} threads")
        if d.get("options"):
            parts.append(", ".join(f"{k}={v}" for k, v in d["options"].items()))
        return " · ".join(parts)

    def blank_input(self, batch: int = 1) -> np.ndarray:
        """Zeros of the input's shape (dynamic dims as 1, the batch as ``batch``) and dtype."""
        shape = [d if isinstance(d, int) else 1 for d in self.input_shape]
        if shape and self.dynamic_batch:
            shape[0] = batch
        return np.zeros(shape, dtype=self._input_dtype)

    # --- the pipeline --------------------------------------------------------------------------

    def prepare(self, src: ImageSource | np.ndarray) -> Prepared:
        """One sample's input tensor (no batch axis), its image meta, and decode/preprocess times."""
        if isinstance(src, np.ndarray) and src.dtype != np.uint8:
            shape = self.input_shape
            expected = shape[1:]
            if src.ndim == len(shape):  # already has a batch axis of 1
                src = src[0] if src.shape[0] == 1 else src
            if src.ndim != len(expected) or any(isinstance(d, int) and d != s for d, s in zip(expected, src.shape)):
                raise InputError(f"an input array must have shape {expected} (without the batch axis); got {list(src.shape)}")
            return Prepared(src.astype(self._input_dtype, copy=False), None, {})
        if self._preprocessor is None:
            raise InputError(
                f"{self.name}: this bundle has no image preprocessing; give input arrays of shape {self.input_shape}"
            )
        t0 = time.perf_counter()
        image = self._preprocessor.image(src)
        t1 = time.perf_counter()
        x, meta = self._preprocessor.from_image(image)
        return Prepared(x, meta, {"decode": (t1 - t0) * 1e3, "preprocess": _ms(t1)})

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run raw input ``batch`` ([N, ...]) through the backend; returns the output arrays."""
        if batch.dtype != self._input_dtype:
            batch = batch.astype(self._input_dtype)
        return self._backend.run(batch)

    def finish(self, outputs: list[np.ndarray], meta: ImageMeta | None = None, top_k: int | None = None) -> dict[str, Any]:
        """One sample's outputs (no batch axis) to its answer, by the task's decoder."""
        return self._decode(outputs, self.bundle, meta, top_k=top_k)

    def predict(self, src: ImageSource | np.ndarray, top_k: int | None = None) -> Prediction:
        x, meta, timing = self.prepare(src)
        t0 = time.perf_counter()
        outputs = self.run(x[None])
        timing["infer"] = _ms(t0)
        t1 = time.perf_counter()
        out = self.finish([o[0] for o in outputs], meta, top_k)
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
            outputs = self.run(np.stack([p.x for p in prepared]))
            infer = _ms(t0)
            for i, (_, meta, timing) in enumerate(prepared):
                t1 = time.perf_counter()
                out = self.finish([o[i] for o in outputs], meta, top_k)
                timing.update(infer=infer / len(chunk), postprocess=_ms(t1))
                results.append(Prediction(out, timing, meta))
        return results

    def golden(self) -> tuple[np.ndarray, np.ndarray] | None:
        """The golden (input, output) this model is checked against: its variant's own pair, else the bundle's."""
        g = self.variant.golden if self.variant is not None and self.variant.golden else None
        return self.bundle.golden(g)

    def check_golden(self) -> GoldenCheck | None:
        """Run the bundle's golden input and compare with its stored output (None when it has none)."""
        g = self.variant.golden if self.variant is not None and self.variant.golden else self.bundle.manifest.golden
        golden = self.golden()
        if golden is None or g is None:  # g is None only when golden() is
            return None
        x, expected = golden
        got = self.run(x)[0]
        if got.shape != expected.shape:  # a model that answers another shape is off by any measure
            return GoldenCheck(False, float("inf"), f"atol={g.atol} rtol={g.rtol}")
        err = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64)))) if got.size else 0.0
        ok = bool(np.allclose(got, expected, atol=g.atol, rtol=g.rtol))
        return GoldenCheck(ok, err, f"atol={g.atol} rtol={g.rtol}")

    def close(self) -> None:
        """Free the backend's session (idempotent); a run after this raises BackendError."""
        self._backend.close()

    def __enter__(self) -> "Model":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        variant = f", variant={self.variant.name!r}" if self.variant else ""
        return f"Model({self.name!r}, version={self.version!r}, backend={self.backend.value!r}{variant})"


def _resolve(bundle: Bundle, config: RuntimeConfig, variant: Variant | None) -> RuntimeConfig:
    """The config with its engine settled: asked for, the variant's, or the one the model file calls for."""
    if variant is not None:
        try:
            kind = BackendKind.parse(variant.backend)
        except InputError as exc:
            raise BundleError(f"{bundle.source}: variant {variant.name!r}: {exc}") from None
        if config.backend is not None and config.backend is not kind:
            raise InputError(f"variant {variant.name!r} runs on {kind.value}, not on {config.backend.value}; "
                             "drop --backend or pick another variant")
        if config.precision is not None and config.precision != variant.precision:
            raise InputError(f"variant {variant.name!r} is {variant.precision}; it cannot run as {config.precision}")
        options = {**variant.options, **config.option_dict}
        return config.with_changes(backend=kind, precision=variant.precision, options=tuple(sorted(options.items())))
    if config.backend is not None:
        return config
    fmt = bundle.manifest.format
    if fmt not in _DEFAULT_BACKEND:
        hint = "; use `edgeship llm` for .gguf models" if fmt is Format.GGUF else ""
        raise BundleError(f"{bundle.source}: no backend runs '{fmt.value}' models{hint}")
    return config.with_changes(backend=_DEFAULT_BACKEND[fmt])


def _check_at_load(config: RuntimeConfig, variant: Variant | None) -> bool:
    if config.golden_check is not None:
        return config.golden_check
    # The golden pair was made by ONNX Runtime on the CPU: anything else must show it agrees.
    reference = (config.backend is BackendKind.ONNXRUNTIME and config.provider in (None, "cpu")
                 and config.precision in (None, "fp32"))
    return variant is not None or not reference
