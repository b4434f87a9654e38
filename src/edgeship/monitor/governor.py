"""The thermal governor: a ladder of actions that takes heat off the device before the firmware does.

>>> config = GovernorConfig.for_limits(limits_for("rpi5"))       # set points 70/74/77/85 C
>>> gov = Governor(config, limits_for("rpi5"), actuator=my_server)
>>> gov.update(now, read_sample("/sys-root"))                     # once per poll; a Decision or None
Decision(before=<GovernorState.NORMAL: 'normal'>, after=<GovernorState.THREADS: 'threads'>, ...)

Each step of the ladder has a set point, a hysteresis (default 5 C) and a minimum dwell. A step
is engaged within one poll of the temperature reaching its set point (several at once when the
temperature jumps past several). It is released, one step at a time from the top, only when the
temperature is at or below set point minus hysteresis *and* the step has been engaged for at least
its dwell: so the governor never flaps around a set point.

It also reacts to the firmware: when the firmware reports throttling now (vcgencmd bits
freq_capped, throttled, soft_temp_limit) or, on a busy device, the CPU clock falls below
``clock_drop`` of its maximum, the governor engages one more step (never the last, "stop": only
temperature stops the service) and engages a further one each dwell while it lasts, and releases
nothing until it ends. A missing temperature holds the state; after ``sensor_timeout_s`` without
one the governor releases everything, saying so, since it can no longer see heat (the firmware's
own protection remains).

Every decision is a structured log line (logger ``edgeship.governor``, JSON) and goes to the
``on_decision`` callbacks (the server counts them in a metric). The states form an explicit enum
whose guard raises "expected X, got Y" on an illegal move.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol, Sequence

from ..errors import EdgeshipError, InputError
from .thermal import Sample, ThermalLimits, ThermalStatus, ThermalTracker

log = logging.getLogger("edgeship.governor")


class Action(str, enum.Enum):
    """What a step of the ladder does, mildest first."""

    THREADS = "threads"  # fewer ONNX Runtime intra-op threads
    VARIANT = "variant"  # the lighter variant of each model (its INT8 or pruned form)
    RATE_LIMIT = "rate_limit"  # 503 + Retry-After for low-priority requests beyond a small rate
    STOP = "stop"  # refuse all new work (readiness: not ready)


class GovernorState(str, enum.Enum):
    """The highest step engaged; NORMAL when none is."""

    NORMAL = "normal"
    THREADS = "threads"
    VARIANT = "variant"
    RATE_LIMIT = "rate_limit"
    STOPPED = "stopped"

    @classmethod
    def of(cls, action: Action) -> "GovernorState":
        return {Action.THREADS: cls.THREADS, Action.VARIANT: cls.VARIANT, Action.RATE_LIMIT: cls.RATE_LIMIT,
                Action.STOP: cls.STOPPED}[action]


class GovernorError(EdgeshipError):
    """An illegal transition of the governor's state machine (a bug, not a user error)."""


@dataclass(frozen=True)
class Step:
    """One rung: engage ``action`` at ``set_c``; release at ``set_c - hysteresis_c`` after ``min_dwell_s``."""

    action: Action
    set_c: float
    hysteresis_c: float = 5.0
    min_dwell_s: float = 30.0

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "action", Action(self.action))
        except ValueError:
            known = ", ".join(a.value for a in Action)
            raise InputError(f"governor step: action expected one of {known}, got {self.action!r}") from None
        for name in ("set_c", "hysteresis_c", "min_dwell_s"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise InputError(f"governor step {self.action.value}: {name} expected a number, got {v!r}")
        if self.hysteresis_c <= 0:
            raise InputError(f"governor step {self.action.value}: hysteresis_c expected > 0, got {self.hysteresis_c}")
        if self.min_dwell_s < 0:
            raise InputError(f"governor step {self.action.value}: min_dwell_s expected >= 0, got {self.min_dwell_s}")

    @property
    def release_c(self) -> float:
        return self.set_c - self.hysteresis_c


@dataclass(frozen=True)
class GovernorConfig:
    """The ladder and how the governor polls.

    steps: mildest first; set points and release points (set point minus hysteresis) must both
      rise along the ladder, else two steps overlap and the ladder could release a lower step
      before a higher one: a clear error at start.
    poll_s: seconds between two readings of the sensors.
    clock_drop: a busy CPU's clock below this fraction of its maximum counts as firmware throttling.
    sensor_timeout_s: how long the state holds without a temperature before everything is released.
    """

    steps: tuple[Step, ...]
    poll_s: float = 1.0
    clock_drop: float = 0.95
    sensor_timeout_s: float = 30.0
    max_jump_c: float = 20.0

    def __post_init__(self) -> None:
        steps = tuple(s if isinstance(s, Step) else Step(**s) for s in self.steps)
        object.__setattr__(self, "steps", steps)
        if not steps:
            raise InputError("governor: the ladder has no steps")
        seen: set[Action] = set()
        for s in steps:
            if s.action in seen:
                raise InputError(f"governor: step {s.action.value!r} appears twice in the ladder")
            seen.add(s.action)
        if Action.STOP in seen and steps[-1].action is not Action.STOP:
            raise InputError("governor: 'stop' must be the last step of the ladder")
        for lo, hi in zip(steps, steps[1:]):
            if not (hi.set_c > lo.set_c and hi.release_c > lo.release_c):
                raise InputError(
                    f"governor: set points overlap: step {hi.action.value!r} (set {hi.set_c:g} C, release "
                    f"{hi.release_c:g} C) must lie above step {lo.action.value!r} (set {lo.set_c:g} C, release "
                    f"{lo.release_c:g} C) in both set point and release point"
                )
        for name in ("poll_s", "sensor_timeout_s", "max_jump_c"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v <= 0:
                raise InputError(f"governor: {name} expected a positive number, got {v!r}")
        if not 0 < self.clock_drop <= 1:
            raise InputError(f"governor: clock_drop expected a fraction in (0, 1], got {self.clock_drop!r}")

    @classmethod
    def for_limits(cls, limits: ThermalLimits, actions: Sequence[Action] = tuple(Action), **kwargs: Any) -> "GovernorConfig":
        """The default ladder under a device's throttling point (``severe_c``): fewer threads 10 C
        before it, the lighter variant 6 C before, rate limiting 3 C before, stop at CRITICAL."""
        offsets = {Action.THREADS: limits.severe_c - 10.0, Action.VARIANT: limits.severe_c - 6.0,
                   Action.RATE_LIMIT: limits.severe_c - 3.0, Action.STOP: limits.critical_c}
        dwell = kwargs.pop("min_dwell_s", 30.0)
        steps = tuple(Step(Action(a), offsets[Action(a)], min_dwell_s=dwell) for a in actions)
        return cls(steps=steps, **kwargs)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GovernorConfig":
        """From JSON: ``{"steps": [{"action": "threads", "set_c": 70}, ...], "poll_s": 1}``."""
        if not isinstance(data, dict) or not isinstance(data.get("steps"), list):
            raise InputError("governor config: expected an object with a 'steps' list")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"governor config: unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        steps = []
        for raw in data["steps"]:
            if not isinstance(raw, dict):
                raise InputError(f"governor config: each step must be an object, got {raw!r}")
            try:
                steps.append(Step(**raw))
            except TypeError as exc:
                raise InputError(f"governor config: step {raw!r}: {exc}") from None
            except ValueError as exc:
                raise InputError(f"governor config: step {raw!r}: {exc} (actions: "
                                 f"{', '.join(a.value for a in Action)})") from None
        return cls(**{**data, "steps": tuple(steps)})


class Actuator(Protocol):
    """What the governor drives (the server): each returns a short note of what it did."""

    def engage(self, action: Action) -> str: ...

    def release(self, action: Action) -> str: ...


@dataclass(frozen=True)
class Decision:
    """One transition, as logged and counted."""

    t: float
    before: GovernorState
    after: GovernorState
    reason: str
    trigger: str  # temperature, firmware, clock, sensor_lost
    temp_c: float | None
    status: ThermalStatus
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"event": "governor", "t": round(self.t, 3), "from": self.before.value, "to": self.after.value,
                "trigger": self.trigger, "reason": self.reason,
                "temp_c": None if self.temp_c is None else round(self.temp_c, 2),
                "status": self.status.name.lower(), "actions": list(self.notes)}


@dataclass
class _Engaged:
    step: Step
    since: float


class Governor:
    """The state machine. Pure: time comes in with each reading, so a replay runs in milliseconds."""

    def __init__(self, config: GovernorConfig, limits: ThermalLimits, actuator: Actuator | None = None,
                 on_decision: Iterable[Callable[[Decision], None]] = ()):
        self.config = config
        self.limits = limits
        self.tracker = ThermalTracker(limits, max_jump_c=config.max_jump_c)
        self.actuator = actuator
        self.on_decision = list(on_decision)
        self.engaged: list[_Engaged] = []
        self.history: list[Decision] = []
        self.last_sample: Sample | None = None
        self.last_temp_t: float | None = None
        self._signal_since: float | None = None
        self._lock = threading.Lock()

    # --- state -------------------------------------------------------------------------------

    @property
    def state(self) -> GovernorState:
        return GovernorState.of(self.engaged[-1].step.action) if self.engaged else GovernorState.NORMAL

    @property
    def level(self) -> int:
        return len(self.engaged)

    def _states(self) -> list[GovernorState]:
        return [GovernorState.NORMAL, *(GovernorState.of(s.action) for s in self.config.steps)]

    def _move(self, t: float, target: int, trigger: str, reason: str) -> Decision:
        before = self.state
        allowed = self._states()
        if not (self.level < target <= len(self.config.steps) or target == self.level - 1):
            legal = [allowed[self.level - 1].value] if self.level else []
            legal += [st.value for st in allowed[self.level + 1:]]
            got = allowed[target].value if 0 <= target < len(allowed) else f"level {target}"
            raise GovernorError(f"governor in state {before.value}: expected {' or '.join(legal) or 'no move'}, got {got}")
        notes: list[str] = []
        if target > self.level:
            for step in self.config.steps[self.level:target]:
                self.engaged.append(_Engaged(step, t))
                notes.append(self._act("engage", step.action))
        else:
            step = self.engaged.pop().step
            notes.append(self._act("release", step.action))
        decision = Decision(t, before, self.state, reason, trigger, self.tracker.latest,
                            self.tracker.status(self.last_sample), tuple(n for n in notes if n))
        self.history.append(decision)
        log.info(json.dumps(decision.to_dict()))
        for callback in self.on_decision:
            try:
                callback(decision)
            except Exception as exc:  # noqa: BLE001  a metrics hook must not stop the governor
                log.warning("governor decision hook failed: %s", exc)
        return decision

    def _act(self, verb: str, action: Action) -> str:
        if self.actuator is None:
            return ""
        try:
            return f"{verb} {action.value}: " + (getattr(self.actuator, verb)(action) or "done")
        except Exception as exc:  # noqa: BLE001  a failed action is reported; the ladder goes on
            log.error("governor could not %s %s: %s", verb, action.value, exc)
            return f"{verb} {action.value} failed: {type(exc).__name__}: {exc}"[:300]

    # --- the control law -----------------------------------------------------------------------

    def update(self, t: float, sample: Sample, busy: bool = True) -> Decision | None:
        """Feed one reading taken at ``t`` (seconds, any monotonic clock); returns the decision, if any."""
        with self._lock:
            return self._update(t, sample, busy)

    def _update(self, t: float, sample: Sample, busy: bool) -> Decision | None:
        self.last_sample = sample
        temp = self.tracker.add(t, sample.temp_c)
        if temp is not None:
            self.last_temp_t = t
        steps = self.config.steps
        signal = self._firmware_signal(sample, busy)
        first_signal = signal is not None and self._signal_since is None
        self._signal_since = (t if first_signal else self._signal_since) if signal is not None else None

        # Engage every step whose set point the temperature has reached, at once.
        want_temp = self.level
        while temp is not None and want_temp < len(steps) and temp >= steps[want_temp].set_c:
            want_temp += 1
        # Firmware throttling: one more step now, another each dwell while it lasts; never "stop".
        want_signal = self.level
        if signal is not None:
            top = len(steps) - (1 if steps[-1].action is Action.STOP else 0)
            held = t - self.engaged[-1].since >= self.engaged[-1].step.min_dwell_s if self.engaged else True
            if self.level < top and (first_signal or held):
                want_signal = self.level + 1
        if max(want_temp, want_signal) > self.level:
            if want_temp >= want_signal:
                s = steps[want_temp - 1]
                return self._move(t, want_temp, "temperature",
                                  f"temperature {temp:.1f} C reached the set point of {s.action.value} ({s.set_c:g} C)")
            assert signal is not None  # want_signal rises above the level only on a signal
            return self._move(t, want_signal, signal[0], signal[1])
        if not self.engaged or signal is not None:
            return None
        top_step = self.engaged[-1]
        if temp is None:
            if self.last_temp_t is None:  # no temperature sensor at all: the firmware's flags engaged it
                if t - top_step.since >= top_step.step.min_dwell_s:
                    return self._move(t, self.level - 1, "firmware",
                                      "the firmware no longer throttles (no temperature sensor to wait on)")
            elif t - self.last_temp_t >= self.config.sensor_timeout_s:
                return self._move(t, self.level - 1, "sensor_lost",
                                  f"no temperature for {t - self.last_temp_t:.0f} s: releasing, the governor cannot see heat")
            return None
        if temp <= top_step.step.release_c and t - top_step.since >= top_step.step.min_dwell_s:
            st = top_step.step
            return self._move(t, self.level - 1, "temperature",
                              f"temperature {temp:.1f} C at or below {st.release_c:g} C (set point {st.set_c:g} - "
                              f"hysteresis {st.hysteresis_c:g}) after {t - top_step.since:.0f} s engaged")
        return None

    def _firmware_signal(self, sample: Sample, busy: bool) -> tuple[str, str] | None:
        if sample.firmware_throttling:
            return "firmware", f"the firmware throttles now ({', '.join(sorted(sample.flags or ()))})"
        if busy and sample.clock_ratio is not None and sample.clock_ratio < self.config.clock_drop:
            return "clock", (f"CPU clock at {sample.clock_ratio:.0%} of its maximum while busy "
                             f"(below {self.config.clock_drop:.0%})")
        return None

    def snapshot(self) -> dict[str, Any]:
        """The state for /status, the dashboard and the monitor."""
        with self._lock:
            s = self.last_sample
            return {
                "state": self.state.value,
                "level": self.level,
                "engaged": [{"action": e.step.action.value, "since": e.since} for e in self.engaged],
                "ladder": [dataclasses.asdict(st) | {"action": st.action.value} for st in self.config.steps],
                "thermal": self.tracker.to_dict(s),
                "firmware_flags": None if s is None or s.flags is None else sorted(s.flags),
                "clock_ratio": None if s is None else s.clock_ratio,
                "clock_khz": None if s is None else s.clock_khz,
                "decisions": [d.to_dict() for d in self.history[-20:]],
            }


class GovernorLoop:
    """Polls the sensors every ``poll_s`` in a daemon thread and feeds the governor.

    >>> loop = GovernorLoop(gov, read=lambda: read_sample("/"), busy=lambda: server.busy()).start()
    >>> loop.stop()
    """

    def __init__(self, governor: Governor, read: Callable[[], Sample], busy: Callable[[], bool] = lambda: True,
                 clock: Callable[[], float] = time.monotonic):
        self.governor = governor
        self.read = read
        self.busy = busy
        self.clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.polls = 0

    def poll_once(self) -> Decision | None:
        try:
            sample = self.read()
        except Exception as exc:  # noqa: BLE001  a broken reader is no sample
            log.warning("governor: reading the sensors failed: %s", exc)
            sample = Sample(None)
        try:
            busy = bool(self.busy())
        except Exception:  # noqa: BLE001
            busy = True
        self.polls += 1
        return self.governor.update(self.clock(), sample, busy)

    def _run(self) -> None:
        period = self.governor.config.poll_s
        while not self._stop.is_set():
            started = self.clock()
            try:
                self.poll_once()
            except Exception as exc:  # noqa: BLE001  the loop must outlive a bug in one poll
                log.error("governor poll failed", exc_info=exc)
            self._stop.wait(max(0.0, period - (self.clock() - started)))

    def start(self) -> "GovernorLoop":
        self._thread = threading.Thread(target=self._run, name="edgeship-governor", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)


__all__ = ["Action", "Actuator", "Decision", "Governor", "GovernorConfig", "GovernorError", "GovernorLoop",
           "GovernorState", "Step"]
