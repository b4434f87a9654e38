"""The governor's state machine on replayed temperatures (a simulated clock: 30 minutes in milliseconds)."""

from __future__ import annotations

import json
import logging
import math
import random

import pytest

from edgeship.errors import InputError
from edgeship.monitor.governor import (
    Action,
    Governor,
    GovernorConfig,
    GovernorError,
    GovernorLoop,
    GovernorState,
    Step,
)
from edgeship.monitor.thermal import Sample, limits_for, read_sample
from tests.support import tree

LIMITS = limits_for("rpi5")
POLL = 1.0


class Recorder:
    """An actuator that records what it was asked, and can be told to fail one action."""

    def __init__(self, fail: Action | None = None):
        self.calls: list[tuple[str, Action]] = []
        self.fail = fail

    def engage(self, action):
        self.calls.append(("engage", action))
        if action is self.fail:
            raise RuntimeError("no lighter variant declared")
        return f"{action.value} on"

    def release(self, action):
        self.calls.append(("release", action))
        return f"{action.value} off"


def ramp(t: float) -> float:
    """30 minutes: 50 C up to 92 C over 15 minutes and back down, with seeded +-0.8 C sensor noise."""
    up = 50.0 + 42.0 * (t / 900.0) if t <= 900 else 92.0 - 42.0 * ((t - 900.0) / 900.0)
    return up + random.Random(int(t)).uniform(-0.8, 0.8)


def test_thirty_minute_ramp_steps_in_time_releases_after_hysteresis_and_dwell_and_never_flaps():
    config = GovernorConfig.for_limits(LIMITS)  # 70 / 74 / 77 / 85 C, hysteresis 5, dwell 30 s
    actuator = Recorder()
    gov = Governor(config, LIMITS, actuator)
    temps = {}
    for i in range(int(1800 / POLL) + 1):
        t = i * POLL
        temps[t] = ramp(t)
        gov.update(t, Sample(temps[t]))
    decisions = gov.history
    assert gov.state is GovernorState.NORMAL
    # Exactly one engage and one release per step: no flapping despite the noise.
    assert len(decisions) == 2 * len(config.steps)
    assert [c for c in actuator.calls] == [("engage", s.action) for s in config.steps] + [
        ("release", s.action) for s in reversed(config.steps)]
    released_above = None  # when the step above was released (releases go from the top down)
    states = [GovernorState.NORMAL, *(GovernorState.of(s.action) for s in config.steps)]
    for i, step in reversed(list(enumerate(config.steps))):
        state, below = states[i + 1], states[i]
        engage = next(d for d in decisions if d.after is state and d.before is below)
        crossed = min(t for t, c in temps.items() if c >= step.set_c)
        assert crossed <= engage.t <= crossed + 2 * POLL, (step, crossed, engage.t)  # within 2 polls
        release = next(d for d in decisions if d.before is state and d.after is below)
        assert temps[release.t] <= step.release_c  # only after the hysteresis...
        assert release.t - engage.t >= step.min_dwell_s  # ...and the dwell
        earliest = max(engage.t + step.min_dwell_s, released_above or 0.0)
        cooled = min(t for t, c in temps.items() if t >= earliest and c <= step.release_c)
        assert release.t <= cooled + 2 * POLL, (step, cooled, release.t)  # and then promptly
        released_above = release.t


def test_dwell_holds_a_step_even_when_it_cools_at_once():
    config = GovernorConfig(steps=(Step("threads", 70.0, min_dwell_s=60.0),))
    gov = Governor(config, LIMITS)
    gov.update(0, Sample(71.0))
    assert gov.state is GovernorState.THREADS
    for t in range(1, 60):
        assert gov.update(t, Sample(60.0)) is None  # cool, but inside the dwell
    d = gov.update(60, Sample(60.0))
    assert d.after is GovernorState.NORMAL and "after 60 s engaged" in d.reason


def test_a_jump_past_several_set_points_engages_them_at_once_in_order():
    actuator = Recorder()
    gov = Governor(GovernorConfig.for_limits(LIMITS), LIMITS, actuator)
    gov.update(0, Sample(60.0))
    gov.update(1, Sample(78.0))  # +18 C: under the spike limit, real
    assert gov.state is GovernorState.RATE_LIMIT
    assert actuator.calls == [("engage", Action.THREADS), ("engage", Action.VARIANT), ("engage", Action.RATE_LIMIT)]


def test_decisions_are_json_log_lines_and_reach_the_hooks(caplog):
    seen = []
    gov = Governor(GovernorConfig.for_limits(LIMITS), LIMITS, on_decision=[seen.append, lambda d: 1 / 0])
    with caplog.at_level(logging.INFO, logger="edgeship.governor"):
        gov.update(0, Sample(71.0))
    (line,) = [json.loads(r.getMessage()) for r in caplog.records if r.name == "edgeship.governor"
               and r.getMessage().startswith("{")]
    assert line["event"] == "governor" and line["from"] == "normal" and line["to"] == "threads"
    assert line["trigger"] == "temperature" and line["temp_c"] == 71.0 and line["status"] == "light"
    assert seen and seen[0].after is GovernorState.THREADS  # the failing hook did not stop the governor


def test_a_failing_action_is_reported_and_the_ladder_goes_on():
    actuator = Recorder(fail=Action.VARIANT)
    gov = Governor(GovernorConfig.for_limits(LIMITS), LIMITS, actuator)
    d = gov.update(0, Sample(75.0))
    assert gov.state is GovernorState.VARIANT
    assert any("engage variant failed: RuntimeError: no lighter variant declared" in n for n in d.notes)


# --- firmware flags and the clock ------------------------------------------------------------


def test_firmware_throttling_engages_a_step_then_one_per_dwell_never_stop():
    config = GovernorConfig.for_limits(LIMITS, min_dwell_s=10.0)
    gov = Governor(config, LIMITS)
    flags = frozenset({"soft_temp_limit", "freq_capped"})
    d = gov.update(0, Sample(60.0, flags=flags))  # cool by the sensor, but the firmware throttles
    assert d.after is GovernorState.THREADS and d.trigger == "firmware" and "soft_temp_limit" in d.reason
    assert gov.update(5, Sample(60.0, flags=flags)) is None  # within the dwell
    assert gov.update(10, Sample(60.0, flags=flags)).after is GovernorState.VARIANT
    assert gov.update(20, Sample(60.0, flags=flags)).after is GovernorState.RATE_LIMIT
    for t in range(21, 120):
        gov.update(t, Sample(60.0, flags=flags))
    assert gov.state is GovernorState.RATE_LIMIT  # flags alone never stop the service
    # The flags clear: release one step per dwell.
    assert gov.update(120, Sample(60.0, flags=frozenset())).after is GovernorState.VARIANT


def test_a_falling_clock_counts_only_while_busy():
    gov = Governor(GovernorConfig.for_limits(LIMITS), LIMITS)
    assert gov.update(0, Sample(60.0, clock_ratio=0.625), busy=False) is None  # idle: ondemand lowers it
    d = gov.update(1, Sample(60.0, clock_ratio=0.80), busy=True)
    assert d.after is GovernorState.THREADS and d.trigger == "clock" and "80%" in d.reason


def test_firmware_only_device_without_a_temperature_sensor():
    gov = Governor(GovernorConfig.for_limits(LIMITS, min_dwell_s=5.0), LIMITS)
    assert gov.update(0, Sample(None, flags=frozenset({"throttled"}))).after is GovernorState.THREADS
    assert gov.update(2, Sample(None, flags=frozenset())) is None
    assert gov.update(5, Sample(None, flags=frozenset())).after is GovernorState.NORMAL


# --- sensor faults ---------------------------------------------------------------------------


def zone(root, content):
    tree(root, {"sys/class/thermal/thermal_zone0/type": "cpu-thermal",
                "sys/class/thermal/thermal_zone0/temp": content})


def test_a_vanished_sensor_holds_the_state_then_releases_after_the_timeout(tmp_path):
    gov = Governor(GovernorConfig.for_limits(LIMITS, sensor_timeout_s=30.0), LIMITS)
    zone(tmp_path, 75500)
    gov.update(0, read_sample(tmp_path))
    assert gov.state is GovernorState.VARIANT
    (tmp_path / "sys/class/thermal/thermal_zone0/temp").unlink()
    for t in range(1, 30):
        assert gov.update(t, read_sample(tmp_path)) is None
    d = gov.update(30, read_sample(tmp_path))
    assert d.trigger == "sensor_lost" and d.after is GovernorState.THREADS and "cannot see heat" in d.reason
    gov.update(31, read_sample(tmp_path))
    assert gov.state is GovernorState.NORMAL
    zone(tmp_path, 76000)  # it comes back: the governor acts on it again
    assert gov.update(32, read_sample(tmp_path)).after is GovernorState.VARIANT


def test_garbage_in_the_sensor_file_is_no_sample(tmp_path):
    gov = Governor(GovernorConfig.for_limits(LIMITS), LIMITS)
    zone(tmp_path, 71000)
    gov.update(0, read_sample(tmp_path))
    for t, junk in enumerate(["garbage", "", "-274000", "\x00\x00", "9" * 40], start=1):
        zone(tmp_path, junk)
        assert gov.update(t, read_sample(tmp_path)) is None
    assert gov.state is GovernorState.THREADS


def test_a_fifty_degree_jump_in_one_sample_moves_nothing_but_two_do(tmp_path):
    gov = Governor(GovernorConfig.for_limits(LIMITS), LIMITS)
    zone(tmp_path, 55000)
    gov.update(0, read_sample(tmp_path))
    zone(tmp_path, 105000)
    assert gov.update(1, read_sample(tmp_path)) is None
    zone(tmp_path, 55500)
    assert gov.update(2, read_sample(tmp_path)) is None
    assert gov.state is GovernorState.NORMAL and gov.tracker.rejected == 1
    zone(tmp_path, 105000)
    gov.update(3, read_sample(tmp_path))
    d = gov.update(4, read_sample(tmp_path))  # confirmed: within 2 polls, straight to stop
    assert d.after is GovernorState.STOPPED


# --- configuration ---------------------------------------------------------------------------


def test_overlapping_set_points_are_a_clear_error_at_start():
    with pytest.raises(InputError, match=r"set points overlap: step 'variant' \(set 72 C"):
        GovernorConfig(steps=(Step("threads", 74.0), Step("variant", 72.0)))
    with pytest.raises(InputError, match="release"):  # rising set points but the release points cross
        GovernorConfig(steps=(Step("threads", 70.0, hysteresis_c=2.0), Step("variant", 72.0, hysteresis_c=8.0)))
    with pytest.raises(InputError, match="appears twice"):
        GovernorConfig(steps=(Step("threads", 70.0), Step("threads", 75.0)))
    with pytest.raises(InputError, match="'stop' must be the last"):
        GovernorConfig(steps=(Step("stop", 85.0), Step("rate_limit", 90.0)))
    with pytest.raises(InputError, match="hysteresis_c expected > 0"):
        Step("threads", 70.0, hysteresis_c=0)
    with pytest.raises(InputError, match="no steps"):
        GovernorConfig(steps=())


def test_config_from_json_names_what_is_wrong():
    cfg = GovernorConfig.from_dict({"steps": [{"action": "threads", "set_c": 68}, {"action": "stop", "set_c": 84}],
                                    "poll_s": 0.5})
    assert [s.action for s in cfg.steps] == [Action.THREADS, Action.STOP] and cfg.poll_s == 0.5
    with pytest.raises(InputError, match="unknown field"):
        GovernorConfig.from_dict({"steps": [], "pol_s": 1})
    with pytest.raises(InputError, match="actions: threads, variant, rate_limit, stop"):
        GovernorConfig.from_dict({"steps": [{"action": "fan", "set_c": 60}]})
    with pytest.raises(InputError, match="steps"):
        GovernorConfig.from_dict([1, 2])


def test_the_guard_says_expected_x_got_y():
    gov = Governor(GovernorConfig.for_limits(LIMITS), LIMITS)
    gov.update(0, Sample(78.0))
    assert gov.state is GovernorState.RATE_LIMIT
    with pytest.raises(GovernorError, match="expected variant or stopped, got normal"):
        gov._move(1, 0, "test", "skip two steps down")


def test_the_loop_polls_in_a_thread():
    import threading

    polled = threading.Event()
    gov = Governor(GovernorConfig.for_limits(LIMITS, poll_s=0.01), LIMITS)

    def read():
        polled.set()
        return Sample(71.0)

    loop = GovernorLoop(gov, read).start()
    assert polled.wait(5)
    loop.stop()
    assert gov.state is GovernorState.THREADS and loop.polls >= 1
    assert not math.isnan(gov.snapshot()["thermal"]["headroom"])


def test_no_flapping_while_the_temperature_hovers_on_a_set_point():
    gov = Governor(GovernorConfig.for_limits(LIMITS, min_dwell_s=0.0), LIMITS)
    for t in range(600):  # 10 minutes swinging 68.5-71.5 C around the 70 C set point
        gov.update(t, Sample(70.0 + 1.5 * math.sin(t / 7.0)))
    assert [(d.before, d.after) for d in gov.history] == [(GovernorState.NORMAL, GovernorState.THREADS)]
