"""Liveness and readiness. Readiness runs each model on its golden input; alerts mark it degraded.

>>> report = await checker.check()          # cached for config.ready_cache_s, one check at a time
>>> report["status"], report["alerts"]
('degraded', [{'name': 'cpu_temperature', 'reason': 'CPU temperature 85.5 C is above 80.0 C', ...}])
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from typing import Any, AsyncIterator

from ..monitor.alerts import evaluate, read_snapshot

READY, DEGRADED, NOT_READY = "ready", "degraded", "not_ready"


def check_model(model) -> dict[str, Any]:
    """Run the golden input (or, without one, a zero input) and say whether the model answered right."""
    t0 = time.perf_counter()
    try:
        golden = model.check_golden()
        if golden is None:
            model.run(model.blank_input())
            result = {"ok": True, "check": "no golden input in the bundle; a zero input ran"}
        else:
            result = {
                "ok": golden.ok,
                "check": "golden input",
                "max_abs_error": golden.max_abs_error,
                "tolerance": golden.tolerance,
            }
            if not golden.ok:
                result["reason"] = f"golden output differs by {golden.max_abs_error:.3g} ({golden.tolerance})"
    except Exception as exc:  # noqa: BLE001  a failing model is a readiness answer, not a crash
        result = {"ok": False, "check": "golden input", "reason": f"{type(exc).__name__}: {exc}"[:300]}
    result["ms"] = round((time.perf_counter() - t0) * 1e3, 3)
    return result


class HealthChecker:
    def __init__(self, models: dict, config, metrics, llm=None):
        self.models = models
        self.config = config
        self.metrics = metrics
        self.llm = llm
        self._cached: tuple[float, dict] | None = None
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def paused(self) -> AsyncIterator[None]:
        """No readiness check runs inside the block (one under way is waited for); the cache is dropped.

        A swap frees the old model's sessions in here, so that no check is running them.
        """
        async with self._lock:
            try:
                yield
            finally:
                self._cached = None

    def _run_checks(self, served: dict) -> dict[str, Any]:
        models = {name: check_model(s.model) for name, s in served.items()}
        try:
            snapshot = read_snapshot(self.config.sensors_root, self.config.disk_path)
            alerts = [dataclasses.asdict(a) for a in evaluate(snapshot, self.config.alerts)]
        except Exception as exc:  # noqa: BLE001  sensors are advisory
            alerts = [{"name": "sensors", "reason": f"sensors unreadable: {exc}"[:200], "value": None, "threshold": None}]
        return {"models": models, "alerts": alerts}

    async def check(self) -> dict[str, Any]:
        async with self._lock:  # concurrent probes share one run of the models
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self.config.ready_cache_s:
                report = await asyncio.to_thread(self._run_checks, dict(self.models))
                self._cached = (time.monotonic(), report)
            report = dict(self._cached[1])
        if self.llm is not None:
            try:
                ok, reason = self.llm.ready()
            except Exception as exc:  # noqa: BLE001
                ok, reason = False, f"{type(exc).__name__}: {exc}"
            report["llm"] = {"name": getattr(self.llm, "name", "llm"), "ok": bool(ok), "reason": reason}
        failed = [n for n, r in report["models"].items() if not r["ok"]]
        if report.get("llm") and not report["llm"]["ok"]:
            failed.append(report["llm"]["name"])
        reasons = [f"model {n!r} failed its check" for n in failed] + [a["reason"] for a in report["alerts"]]
        status = NOT_READY if failed else DEGRADED if report["alerts"] else READY
        report["status"] = status
        report["reasons"] = reasons
        self.metrics.readiness.state(status)
        return report

    async def model_ready(self, name: str) -> bool:
        report = await self.check()
        return bool(report["models"].get(name, {}).get("ok"))
