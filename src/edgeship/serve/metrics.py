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
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily

from .. import __version__

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


class SystemCollector:
    """System gauges read at scrape time through :mod:`edgeship.monitor.sensors`; no sample, no series."""

    def __init__(self, sensors_root: str = "/", disk_path: str = "/"):
        self.root = sensors_root
        self.disk_path = disk_path

    def describe(self):  # registering must not read sensors
        return []

    def collect(self):
        from ..monitor import sensors

        try:
            gauges = sensors.system_gauges(self.disk_path)
            temp = sensors.cpu_temperature(self.root)
            throttle = sensors.throttle_status(self.root)
            zones = sensors.thermal_zones(self.root)
        except Exception as exc:  # noqa: BLE001  a sensor bug must not break /metrics
            log.warning("system sensors failed: %s", exc)
            return
        simple = [
            ("edgeship_cpu_percent", "CPU utilisation since the previous scrape, percent", gauges.cpu_percent),
            ("edgeship_process_resident_memory_bytes", "Resident memory of the server process", gauges.rss_bytes),
            ("edgeship_memory_available_bytes", "Memory available to new processes", gauges.available_memory_bytes),
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
        readable = [z for z in zones if z.celsius is not None]
        if readable:
            g = GaugeMetricFamily("edgeship_thermal_zone_celsius", "Temperature of each thermal zone", labels=["zone", "type"])
            for z in readable:
                g.add_metric([z.name, z.type], float(z.celsius))
            yield g
        if throttle.throttled_now is not None:
            yield GaugeMetricFamily("edgeship_throttled", "1 when the firmware reports throttling now",
                                    value=1.0 if throttle.throttled_now else 0.0)
        if throttle.pi is not None:
            yield GaugeMetricFamily("edgeship_pi_throttled_flags", "Raw vcgencmd get_throttled bit field",
                                    value=float(throttle.pi.raw))
        if throttle.devfreq:
            g = GaugeMetricFamily("edgeship_devfreq_hertz", "Current clock of devfreq devices (Jetson GPU)", labels=["device"])
            for f in throttle.devfreq:
                g.add_metric([f.name], float(f.current))
            yield g


class ServeMetrics:
    """Every metric of one app."""

    def __init__(self, sensors_root: str = "/", disk_path: str = "/", registry: CollectorRegistry | None = None):
        r = self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        r.register(SystemCollector(sensors_root, disk_path))
        self.requests = Counter("edgeship_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "method", "status"], registry=r)
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
        self.ready = Gauge("edgeship_ready", "1 ready, 0.5 degraded, 0 not ready (last readiness check)", registry=r)
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
            self.rejected.labels(name),
        )


class RequestCounter:
    """Pure ASGI middleware counting requests by route template and status (no per-path series)."""

    def __init__(self, app, metrics: ServeMetrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = 500

        async def send_wrapper(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", None) or "unmatched"
            self.metrics.requests.labels(endpoint, scope.get("method", ""), str(status)).inc()
