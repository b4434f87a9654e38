"""Prometheus metrics of one app, in its own CollectorRegistry (so tests can build many apps).

>>> m = ServeMetrics(config)
>>> per_model = m.for_model("mobilenet", model)      # label children bound once, cheap to observe
>>> generate_latest(m.registry)                     # what GET /metrics answers
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from .. import __version__
from .stats import ModelStats

log = logging.getLogger("edgeship.serve")

# Seconds: from a 0.5 ms tiny model to a 5 s stall on a throttled Pi.
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


@dataclass
class ModelMetrics:
    """The label children of one model."""

    queue_wait: Any
    preprocess: Any
    inference: Any
    total: Any
    batch_size: Any
    queue_depth: Any
    rejected: Any
    stats: Any = None  # serve.triton.ModelStats: Triton's statistics extension, per version


class SystemCollector:
    """System gauges read at scrape time through :mod:`edgeship.monitor.sensors`; no sample, no series.

    Nothing here keeps state between scrapes, so two Prometheus servers scraping one device see the
    same thing. Where node_exporter has the metric, its name, labels and units are used
    (``node_thermal_zone_temp``, ``node_cpu_scaling_frequency_hertz``, ``node_cpu_frequency_max_hertz``,
    ``node_cooling_device_cur_state``/``max_state``, ``node_cpu_seconds_total``): dashboards and
    rules written for node_exporter work on a device without it. docs/health.md has the mapping.
    """

    def __init__(self, sensors_root: str = "/", disk_path: str = "/", limits=None):
        self.root = sensors_root
        self.disk_path = disk_path
        self.limits = limits  # monitor.thermal.ThermalLimits: status and headroom at scrape time

    def describe(self):  # registering must not read sensors
        return []

    def collect(self):
        from ..monitor import sensors

        try:
            gauges = sensors.system_gauges(self.disk_path)
            temp = sensors.cpu_temperature(self.root)
            throttle = sensors.throttle_status(self.root)
            zones = sensors.thermal_zones(self.root)
            cooling = sensors.cooling_devices(self.root)
        except Exception as exc:  # noqa: BLE001  a sensor bug must not break /metrics
            log.warning("system sensors failed: %s", exc)
            return
        yield from _cpu_seconds()
        simple = [
            # node_exporter's node_memory_MemAvailable_bytes, which promtool rejects as camelCase
            ("edgeship_memory_available_bytes", "Memory available to new processes (MemAvailable)",
             gauges.available_memory_bytes),
            ("edgeship_disk_free_bytes", "Free space on the disk holding the models", gauges.disk_free_bytes),
            ("edgeship_cpu_frequency_ratio", "Lowest CPU clock over its maximum (below 1: idle or throttled)",
             throttle.min_cpu_ratio),
        ]
        for name, doc, value in simple:
            if value is not None:
                yield GaugeMetricFamily(name, doc, value=float(value))
        if temp is not None:
            g = GaugeMetricFamily("edgeship_cpu_temperature_celsius", "CPU temperature", labels=["source"])
            g.add_metric([temp.source], float(temp.celsius))
            yield g
            if self.limits is not None:
                yield from _thermal_status(self.limits, temp.celsius, throttle)
        readable = [z for z in zones if z.celsius is not None]
        if readable:
            g = GaugeMetricFamily("node_thermal_zone_temp", "Zone temperature in Celsius", labels=["zone", "type"])
            for z in readable:
                g.add_metric([z.name.removeprefix("thermal_zone"), z.type], float(z.celsius))
            yield g
        if throttle.cpus:
            cur = GaugeMetricFamily("node_cpu_scaling_frequency_hertz", "Current scaled CPU thread frequency in hertz.",
                                    labels=["cpu"])
            top = GaugeMetricFamily("node_cpu_frequency_max_hertz", "Maximum CPU thread frequency in hertz.",
                                    labels=["cpu"])
            for f in throttle.cpus:
                cpu = f.name.removeprefix("cpu")
                cur.add_metric([cpu], f.current * 1000.0)
                top.add_metric([cpu], f.maximum * 1000.0)
            yield cur
            yield top
        if cooling:
            cur = GaugeMetricFamily("node_cooling_device_cur_state", "Current throttle state of the cooling device",
                                    labels=["name", "type"])
            top = GaugeMetricFamily("node_cooling_device_max_state", "Maximum throttle state of the cooling device",
                                    labels=["name", "type"])
            for c in cooling:
                name = c.name.removeprefix("cooling_device")
                cur.add_metric([name, c.type], float(c.cur_state))
                if c.max_state is not None:
                    top.add_metric([name, c.type], float(c.max_state))
            yield cur
            yield top
        if throttle.pi is not None:
            now = GaugeMetricFamily("edgeship_firmware_throttled",
                                    "1 while the firmware reports this condition now (vcgencmd get_throttled)",
                                    labels=["flag"])
            ever = GaugeMetricFamily("edgeship_firmware_throttled_since_boot",
                                     "1 when the firmware has reported this condition since boot", labels=["flag"])
            for flag in FIRMWARE_FLAGS:
                now.add_metric([flag], 1.0 if getattr(throttle.pi, f"{flag}_now") else 0.0)
                ever.add_metric([flag], 1.0 if getattr(throttle.pi, f"{flag}_since_boot") else 0.0)
            yield now
            yield ever
        if throttle.devfreq:
            g = GaugeMetricFamily("edgeship_devfreq_hertz", "Current clock of devfreq devices (Jetson GPU)", labels=["device"])
            for f in throttle.devfreq:
                g.add_metric([f.name], float(f.current))
            yield g


FIRMWARE_FLAGS = ("under_voltage", "freq_capped", "throttled", "soft_temp_limit")
THERMAL_STATES = ("none", "light", "moderate", "severe", "critical", "emergency", "shutdown")


def _thermal_status(limits, celsius: float, throttle):
    from ..monitor.thermal import ThermalStatus

    status = limits.status_for(celsius)
    if throttle.pi is not None and (throttle.pi.freq_capped_now or throttle.pi.throttled_now
                                    or throttle.pi.soft_temp_limit_now):
        status = max(status, ThermalStatus.SEVERE)
    yield GaugeMetricFamily("edgeship_thermal_headroom",
                            "Android-style thermal headroom: 1 at the throttling point, 0 thirty degrees below",
                            value=limits.headroom(celsius))
    g = GaugeMetricFamily("edgeship_thermal_status", "Thermal status in Android's levels (a state set)",
                          labels=["edgeship_thermal_status"])
    for name in THERMAL_STATES:
        g.add_metric([name], 1.0 if name == status.name.lower() else 0.0)
    yield g
    yield GaugeMetricFamily("edgeship_thermal_throttle_point_celsius",
                            "Temperature where the firmware or kernel starts throttling (headroom 1)",
                            value=float(limits.severe_c))


def _cpu_seconds():
    """node_exporter's ``node_cpu_seconds_total``: a counter per CPU and mode, so rate() gives the use."""
    try:
        import psutil

        per_cpu = psutil.cpu_times(percpu=True)
    except Exception:  # noqa: BLE001  no psutil, or /proc unreadable
        return
    c = CounterMetricFamily("node_cpu_seconds_total", "Seconds the CPUs spent in each mode.", labels=["cpu", "mode"])
    for i, times in enumerate(per_cpu):
        for mode in ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"):
            value = getattr(times, mode, None)
            if value is not None:
                c.add_metric([str(i), mode], float(value))
    yield c


class ServeMetrics:
    """Every metric of one app."""

    def __init__(self, sensors_root: str = "/", disk_path: str = "/", registry: CollectorRegistry | None = None,
                 limits=None):
        r = self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=r)  # process_resident_memory_bytes, process_cpu_seconds_total, ...
        PlatformCollector(registry=r)
        r.register(SystemCollector(sensors_root, disk_path, limits))
        self.requests = Counter("edgeship_requests", "HTTP requests by endpoint, status and model ('' when none)",
                                ["endpoint", "method", "status", "model"], registry=r)
        self.queue_wait = Histogram("edgeship_queue_wait_seconds", "Time a request waited for a decode thread and a batch",
                                    ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.preprocess = Histogram("edgeship_preprocess_seconds", "Decode and preprocess time per image",
                                    ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.inference = Histogram("edgeship_inference_seconds", "Model run time per batch",
                                   ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.total = Histogram("edgeship_request_seconds", "Server-side time of a prediction request, end to end",
                               ["model"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("edgeship_batch_size", "Rows per model run", ["model"], buckets=BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge("edgeship_queue_depth", "Requests admitted and not yet answered", ["model"], registry=r)
        self.rejected = Counter("edgeship_rejected", "Requests refused with 503 because the queue was full",
                                ["model"], registry=r)
        self.model_info = Gauge("edgeship_model_info", "Loaded models (value 1)",
                                ["model", "version", "task", "format", "sha256"], registry=r)
        self.readiness = Enum("edgeship_readiness", "Result of the last readiness check (a state set)",
                              states=["ready", "degraded", "not_ready"], registry=r)
        self.build = Gauge("edgeship_build_info", "edgeship version (value 1)", ["version"], registry=r)
        self.build.labels(__version__).set(1)
        self.started = time.time()

    @staticmethod
    def _info_labels(name: str, model) -> tuple[str, ...]:
        m = model.bundle.manifest
        return name, m.version, m.task.value, m.format.value, m.files.get(m.model, "")

    def replace_model_info(self, name: str, old, new) -> None:
        """After a swap: the info series of the model now serving ``name``, and not the old one's."""
        try:
            self.model_info.remove(*self._info_labels(name, old))
        except KeyError:  # already gone (a swap back to the same version)
            pass
        self.model_info.labels(*self._info_labels(name, new)).set(1)

    def for_model(self, name: str, model) -> ModelMetrics:
        """The label children of the model served as ``name``."""
        self.model_info.labels(*self._info_labels(name, model)).set(1)
        return ModelMetrics(
            self.queue_wait.labels(name), self.preprocess.labels(name), self.inference.labels(name),
            self.total.labels(name), self.batch_size.labels(name), self.queue_depth.labels(name),
            self.rejected.labels(name), ModelStats(name),
        )


class RequestCounter:
    """Pure ASGI middleware counting requests by route template, status and model (no per-path series).

    The model label is the route's ``{name}`` only when it names a served model (``known``): a
    client asking for thousands of made-up names must not make thousands of series.
    """

    def __init__(self, app, metrics: ServeMetrics, known=lambda: (), live=None):
        self.app = app
        self.metrics = metrics
        self.known = known
        self.live = live  # serve.live.LiveStats: the latency of every model request, for the dashboard

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500
        t0 = time.perf_counter()

        async def send_wrapper(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or scope.get("edgeship_endpoint") or "unmatched"
            name = (scope.get("path_params") or {}).get("name")
            model = name if name is not None and name in self.known() else ""
            self.metrics.requests.labels(endpoint, scope.get("method", ""), str(status), model).inc()
            if self.live is not None and model and scope.get("method") == "POST":
                self.live.record(model, time.perf_counter() - t0, status)
