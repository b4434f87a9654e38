"""The server's memory: its plan, made while it starts from what it measures, and the budget it must fit.

>>> planner = Planner(config)                     # the process as it is before any model loads
>>> with planner.measure("mobilenet: session"):    # the RSS a step adds becomes a measured part
...     model = Model.load("mobilenet/")
>>> planner.add_weights("mobilenet", model)        # the mapped weights: their file size
>>> planner.add_load_peaks("mobilenet", model, capacity=2, in_flight=4)
>>> budget = Budget.resolve(config.memory_budget)  # 512 MB, 60% of RAM, or the default share
>>> budget.check(planner.plan)                    # MemoryBudgetError naming what does not fit
>>> create_budget_router(state)                   # GET /v1/budget: the plan against measured RSS

One mechanism for the server and for ``edgeship fit``: fit starts the same server in a fresh
process without listening (serve/plan.py), so its prediction is the plan the server would make.
Parts are measured where the server can measure them as it starts (the process before any model,
what each load, the twin, the first run and the decode threads add), read from file sizes (weights
the sessions map), computed (an LLM's KV cache from its header, rows in flight), or predicted from
those (a full batch, decodes at the pixel limit), and each says which.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Iterator, Union

import numpy as np

from ..errors import MemoryBudgetError
from ..monitor.memory import MB, MemoryPart, MemoryPlan, Source, When, physical_memory_bytes, usage
from ..util import trim_heap

log = logging.getLogger("edgeship.serve")

# The share of the device's RAM the server may plan to use when no --memory-budget is given: the rest
# is the OS's, the page cache's and other processes'.
DEFAULT_SHARE = 0.75
# Peak RSS a picture adds while it is decoded and preprocessed, per pixel, for the costliest format
# measured (RGBA PNG: decode, alpha composite onto white, convert to RGB: 24 bytes; RGB WebP 16,
# RGB PNG 8, JPEG 2, thanks to the reduced-scale decode). Measured on 2000x2000 pictures.
DECODE_BYTES_PER_PIXEL = 24
# What a user can change to shrink a part, by the part's name.
FIXES = {
    "picture decodes": "lower --max-decode-mb, --max-pixels or --prep-threads",
    "batch of": "lower --max-batch",
    "inputs in flight": "lower --max-batch or --prep-threads",
    "twin": "--spinning off (no twin session)",
    "KV cache": "lower --llm-ctx",
    "compute buffers": "lower --llm-ctx",
    ": weights": "a smaller or more quantized model",
    "session": "a smaller or more quantized model",
}


@dataclass(frozen=True)
class Budget:
    """How many bytes the server may plan to use, and where that figure came from."""

    bytes: Union[int, None]  # None: the device's RAM is unknown, nothing is checked
    source: str

    @classmethod
    def resolve(cls, setting: Union[int, float, None], ram: Union[int, None] = None) -> "Budget":
        """``setting``: bytes (int), a share of RAM (float in (0, 1]), or None for the default share."""
        ram = physical_memory_bytes() if ram is None else ram
        if isinstance(setting, int) and not isinstance(setting, bool):
            return cls(setting, "--memory-budget")
        share = DEFAULT_SHARE if setting is None else float(setting)
        if ram is None:
            return cls(None, "not checked: this system does not say how much RAM it has")
        what = "default: " if setting is None else ""
        return cls(int(ram * share), f"{what}{share:.0%} of {ram / MB:.0f} MB of RAM")

    def check(self, plan: MemoryPlan) -> None:
        if self.bytes is None:
            return
        message = plan.overrun(self.bytes, FIXES)
        if message:
            raise MemoryBudgetError(f"{message}\n(memory budget: {self.source})")


def parse_budget(text: str) -> Union[int, float]:
    """argparse type for --memory-budget: '512M', '1.5G', '800000000' (bytes) or '60%' of RAM."""
    raw = text.strip().upper().removesuffix("B")
    try:
        if raw.endswith("%"):
            share = float(raw[:-1]) / 100
            if not 0 < share <= 1:
                raise ValueError
            return share
        unit = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(raw[-1:], 1)
        value = float(raw[:-1] if unit != 1 else raw) * unit
        if value < 1:
            raise ValueError
        return int(value)
    except ValueError:
        import argparse

        raise argparse.ArgumentTypeError(
            f"expected a size like 512M or 1.5G, or a share of RAM like 60%, got {text!r}") from None


@dataclass
class Step:
    name: str
    note: str = ""
    bytes: Union[int, None] = None


class Planner:
    """Collects the parts of the plan as the server starts, measuring what it can."""

    def __init__(self, config: Any):
        self.config = config
        trim_heap()  # what imports left free is not the server's
        now = usage()
        self.start = now
        self.parts: list[MemoryPart] = []
        self.notes: list[str] = []
        self._weights: set[str] = set()  # the weights mappings counted already (a file is mapped once)
        self._mapped = 0  # their bytes
        if now is not None:
            self.parts.append(MemoryPart("process before models", now.rss_bytes, Source.MEASURED,
                                         note="interpreter, imports, and whatever the process held"))
        else:
            self.notes.append("this system does not report resident memory: nothing here was measured")

    @contextlib.contextmanager
    def measure(self, name: str, note: str = "") -> Iterator["Step"]:
        """The resident memory the block adds becomes part ``step.name``, but for the weights files the
        sessions map (a part of their own); ``step.bytes`` holds it after the block, None where not measured."""
        step = Step(name, note)
        before, mapped_before = usage(), self._mapped
        yield step
        after = usage()
        if before is not None and after is not None:
            # everything the step made resident (heap, code pages it ran) but weights it mapped, a part of
            # their own (SharedWeights touches all their pages as it maps them)
            step.bytes = max(after.rss_bytes - before.rss_bytes - (self._mapped - mapped_before), 0)
            self.parts.append(MemoryPart(step.name, step.bytes, Source.MEASURED, note=step.note))

    def add_weights(self, name: str, model: Any) -> None:
        backend = getattr(model, "_backend", None)
        weights = getattr(backend, "weights", None)
        if weights is not None and weights.key not in self._weights:
            self._weights.add(weights.key)
            self._mapped += weights.mapped_bytes
            self.parts.append(MemoryPart(f"{name}: weights", weights.mapped_bytes, Source.FILE,
                                         note="mapped from the optimized-graph cache, shared by its sessions"))

    def add_load_peaks(self, name: str, model: Any, capacity: int, in_flight: int) -> None:
        """The input rows of the requests past decoding (bounded by the worker) and the batch's copy."""
        row = _row_bytes(model)
        if row:
            self.parts.append(MemoryPart(
                f"{name}: inputs in flight", (in_flight + capacity) * row, Source.COMPUTED, When.PEAK,
                note=f"{in_flight} requests' rows at most, and the batch's copy of {capacity}, {row / 1024:.0f} KB each"))

    def add_decodes(self) -> None:
        """What the decode threads may hold at once: each decode is refused past ``max_decode_bytes``
        (runtime/preprocess.py checks the cost from the header), and costs at most 24 bytes a pixel."""
        cfg = self.config
        by_pixels = cfg.max_pixels * DECODE_BYTES_PER_PIXEL
        if cfg.max_decode_bytes <= by_pixels:
            each, why = cfg.max_decode_bytes, f"{cfg.max_decode_bytes / MB:g} MiB each (--max-decode-mb)"
        else:
            each, why = by_pixels, (f"{cfg.max_pixels / 1e6:g} MP x {DECODE_BYTES_PER_PIXEL} bytes (the costliest "
                                    "format, an RGBA PNG)")
        self.parts.append(MemoryPart(
            "picture decodes at the pixel limit", cfg.prep_threads * each, Source.PREDICTED, When.PEAK,
            note=f"{cfg.prep_threads} decode threads x {why}"))

    def add_llm(self, llm: Any) -> None:
        parts = getattr(llm, "memory_parts", None)
        if parts is None:
            self.notes.append(f"the LLM {getattr(llm, 'name', '')!r} does not say what memory it needs: not planned")
            return
        self.parts.extend(parts())

    @property
    def plan(self) -> MemoryPlan:
        return MemoryPlan(tuple(self.parts), tuple(self.notes))


def _row_bytes(model: Any) -> int:
    """Bytes of one input row (the batch axis left out; dynamic dims from the bundle's preprocessing)."""
    pre = model.bundle.manifest.preprocessing
    dims = list(model.input_shape[1:])
    if pre is not None and len(dims) == 3:
        h, w = pre.size
        fill = [3, h, w] if pre.layout == "NCHW" else [h, w, 3]
        dims = [d if isinstance(d, int) else f for d, f in zip(dims, fill)]
    if not all(isinstance(d, int) for d in dims):
        return 0
    return int(np.prod(dims)) * model.input_dtype.itemsize


def measured_now() -> dict[str, Any]:
    from ..monitor.memory import peak_rss_bytes

    now = usage()
    return {"rss_bytes": now.rss_bytes if now else None, "anon_bytes": now.anon_bytes if now else None,
            "file_bytes": now.file_bytes if now else None, "peak_rss_bytes": peak_rss_bytes()}


def report(plan: MemoryPlan, budget: Budget, measured: dict[str, Any] | None = None,
           at_start: dict[str, Any] | None = None, llm_loaded: int | None = None) -> dict[str, Any]:
    """What GET /v1/budget answers: the plan, the budget, and the process's memory measured now (and
    when the plan was made; and what loading the LLM added, which the plan could only compute)."""
    measured = dict(measured or measured_now())
    if at_start is not None:
        measured["rss_at_start_bytes"] = at_start.get("rss_bytes")
    if llm_loaded is not None:
        measured["llm_load_bytes"] = llm_loaded
    rss = measured.get("rss_bytes")
    return {
        "budget_bytes": budget.bytes, "budget_source": budget.source,
        "fits": None if budget.bytes is None else plan.peak_bytes <= budget.bytes,
        **plan.to_dict(),
        "measured": measured,
        "resident_vs_measured": None if not rss else round(plan.resident_bytes / rss, 3),
    }


def start_line(plan: MemoryPlan, budget: Budget, measured: dict[str, Any]) -> str:
    """The one line the server logs about its memory as it starts."""
    rss = measured.get("rss_bytes")
    cap = f"{budget.bytes / MB:.0f} MB ({budget.source})" if budget.bytes else budget.source
    return (f"memory: planned {plan.resident_bytes / MB:.0f} MB resident, {plan.peak_bytes / MB:.0f} MB peak, "
            f"budget {cap}; measured RSS {rss / MB:.0f} MB" if rss else "measured RSS not available")


class BudgetCollector:
    """Prometheus: the planned parts, the budget, and the peak RSS so far, read at scrape time."""

    def __init__(self, state: Any):
        self.state = state

    def describe(self):
        return []

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        plan, budget = self.state.memory_plan, self.state.memory_budget
        if plan is None:
            return
        parts = GaugeMetricFamily("edgeship_memory_planned_bytes", "The server's memory plan, by part",
                                  labels=["part", "source", "when"])
        for p in plan.parts:
            parts.add_metric([p.name, p.source.value, p.when.value], float(p.bytes))
        yield parts
        yield GaugeMetricFamily("edgeship_memory_planned_resident_bytes", "Planned memory held from the start",
                                value=float(plan.resident_bytes))
        yield GaugeMetricFamily("edgeship_memory_planned_peak_bytes", "Planned peak memory (work in flight included)",
                                value=float(plan.peak_bytes))
        if budget is not None and budget.bytes is not None:
            yield GaugeMetricFamily("edgeship_memory_budget_bytes", "The memory budget the plan was checked against",
                                    value=float(budget.bytes))
        now = measured_now()
        if now["peak_rss_bytes"] is not None:
            yield GaugeMetricFamily("edgeship_process_peak_resident_memory_bytes",
                                    "Peak resident memory of the server process (VmHWM)",
                                    value=float(now["peak_rss_bytes"]))


def create_budget_router(state: Any):
    from starlette.responses import JSONResponse

    from .._routes import Routes

    router = Routes(tag="server")

    @router.get("/v1/budget")
    async def get_budget(request) -> JSONResponse:
        """The memory plan made at start, the budget it was checked against, and what is resident now."""
        return JSONResponse(report(state.memory_plan, state.memory_budget, at_start=state.memory_at_start,
                                   llm_loaded=state.memory_llm_loaded))

    return router
