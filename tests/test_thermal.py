"""Thermal status, headroom and forecast, limits per target, and the sensors' new readers."""

from __future__ import annotations

import pytest

from edgeship.errors import InputError
from edgeship.monitor import sensors
from edgeship.monitor.thermal import (
    GENERIC_LIMITS,
    RPI_LIMITS,
    Sample,
    ThermalLimits,
    ThermalStatus,
    ThermalTracker,
    limits_for,
    limits_from_trips,
    read_sample,
)
from tests.support import tree


def test_status_levels_follow_android_order_and_the_pi_firmware():
    assert [s.value for s in ThermalStatus] == list(range(7))
    limits = limits_for("rpi5")
    assert limits.severe_c == 80.0 and limits.critical_c == 85.0  # the firmware's soft and hard limits
    assert limits.status_for(50.0) is ThermalStatus.NONE
    assert limits.status_for(79.9) is ThermalStatus.MODERATE
    assert limits.status_for(80.0) is ThermalStatus.SEVERE
    assert limits.status_for(86.0) is ThermalStatus.CRITICAL


def test_headroom_is_androids_normalisation():
    limits = limits_for("rpi5")
    assert limits.headroom(80.0) == pytest.approx(1.0)  # 1.0 at SEVERE
    assert limits.headroom(50.0) == pytest.approx(0.0)  # 0.0 thirty degrees below
    assert limits.headroom(30.0) == 0.0
    assert limits.headroom(65.0) == pytest.approx(0.5)


def test_forecast_from_the_least_squares_slope():
    tracker = ThermalTracker(limits_for("rpi5"))
    assert tracker.headroom() is None and tracker.forecast(10) is None
    for t in range(10):
        tracker.add(float(t), 60.0 + 0.5 * t)  # 0.5 C/s
    assert tracker.slope() == pytest.approx(0.5)
    assert tracker.forecast(10) == pytest.approx(64.5 + 5.0)
    assert tracker.headroom(forecast_s=10) == pytest.approx((69.5 - 50.0) / 30.0)
    d = tracker.to_dict()
    assert d["status"] == "none" and d["slope_c_per_min"] == pytest.approx(30.0)


def test_overrides_and_bad_limits():
    limits = limits_for("rpi5", severe_c=78.0)
    assert limits.severe_c == 78.0 and "overridden" in limits.source
    with pytest.raises(InputError, match="expected severe_c < critical_c"):
        limits_for("rpi5", severe_c=90.0)
    with pytest.raises(InputError, match="thermal limits"):
        limits_for("rpi5", hottest_c=1.0)
    with pytest.raises(InputError, match="expected a number"):
        ThermalLimits(1, 2, "x", 4, 5, 6)


def test_jetson_limits_come_from_its_trip_points(tmp_path):
    z = "sys/class/thermal/thermal_zone1"
    tree(tmp_path, {
        "sys/class/thermal/thermal_zone0/type": "GPU-therm", "sys/class/thermal/thermal_zone0/temp": 40000,
        "sys/class/thermal/thermal_zone0/trip_point_0_temp": 20000,  # not the CPU zone: ignored
        "sys/class/thermal/thermal_zone0/trip_point_0_type": "passive",
        f"{z}/type": "CPU-therm", f"{z}/temp": 45000,
        f"{z}/trip_point_0_temp": 99000, f"{z}/trip_point_0_type": "passive", f"{z}/trip_point_0_hyst": 2000,
        f"{z}/trip_point_1_temp": 104500, f"{z}/trip_point_1_type": "critical",
        f"{z}/trip_point_2_temp": "garbage", f"{z}/trip_point_2_type": "hot",
    })
    trips = sensors.trip_points(tmp_path)
    assert [(t.type, t.celsius) for t in trips] == [("passive", 99.0), ("critical", 104.5)]
    assert trips[0].hysteresis_c == 2.0
    limits = limits_for("jetson-orin-nx", tmp_path)
    assert limits.severe_c == 99.0 and limits.shutdown_c == 104.5 and "thermal_zone1" in limits.source
    assert limits.severe_c < limits.critical_c < limits.emergency_c < limits.shutdown_c


def test_no_trip_points_is_the_generic_default(tmp_path):
    assert limits_from_trips(tmp_path) is None
    assert limits_for(None, tmp_path) is GENERIC_LIMITS
    assert limits_for("rpi4", tmp_path) is RPI_LIMITS


def test_get_throttled_from_sysfs_without_vcgencmd(tmp_path):
    tree(tmp_path, {"sys/devices/platform/soc/soc:firmware/get_throttled": "50005"})
    status = sensors.throttle_status(tmp_path)  # a fake root runs no vcgencmd
    assert status.pi.under_voltage_now and status.pi.throttled_now and status.throttled_now is True
    sample = read_sample(tmp_path)
    assert sample.flags == frozenset({"under_voltage", "throttled"}) and sample.firmware_throttling
    # Only the thermal bits count: under-voltage alone is not the firmware throttling for heat.
    assert not Sample(60.0, flags=frozenset({"under_voltage"})).firmware_throttling


def test_garbled_get_throttled_is_no_sample(tmp_path):
    tree(tmp_path, {"sys/devices/platform/axi/axi:firmware/get_throttled": "zz not hex"})
    assert sensors.throttle_status(tmp_path).pi is None
    tree(tmp_path, {"sys/devices/platform/axi/axi:firmware/get_throttled": "a0008"})
    assert sensors.throttle_status(tmp_path).pi.soft_temp_limit_now  # the Pi 5's node name


def test_spike_filter_drops_a_one_sample_jump_and_keeps_a_real_one():
    tracker = ThermalTracker(limits_for("rpi5"))
    assert tracker.add(0, 60.0) == 60.0
    assert tracker.add(1, 110.0) is None  # +50 C in one sample: held back
    assert tracker.add(2, 60.5) == 60.5  # it was a glitch
    assert tracker.latest == 60.5 and tracker.rejected == 1
    assert tracker.add(3, 95.0) is None
    assert tracker.add(4, 96.0) == 96.0  # confirmed by the next sample: real
    assert [c for _, c in tracker.samples][-2:] == [95.0, 96.0]
    assert tracker.add(5, float("nan")) is None and tracker.add(6, -274.0) is None
    assert tracker.status() is ThermalStatus.CRITICAL


def test_status_rises_to_severe_when_the_firmware_throttles():
    tracker = ThermalTracker(limits_for("rpi5"))
    tracker.add(0, 60.0)
    assert tracker.status() is ThermalStatus.NONE
    assert tracker.status(Sample(60.0, flags=frozenset({"throttled"}))) is ThermalStatus.SEVERE


def test_read_sample_of_an_empty_tree_is_all_none(tmp_path):
    s = read_sample(tmp_path)
    assert s == Sample(None, "", None, None, None, None) and not s.firmware_throttling


def test_cooling_devices(tmp_path):
    tree(tmp_path, {"sys/class/thermal/cooling_device0/type": "pwm-fan",
                    "sys/class/thermal/cooling_device0/cur_state": 2, "sys/class/thermal/cooling_device0/max_state": 4,
                    "sys/class/thermal/cooling_device1/type": "broken", "sys/class/thermal/cooling_device1/cur_state": "x"})
    (fan,) = sensors.cooling_devices(tmp_path)
    assert (fan.name, fan.type, fan.cur_state, fan.max_state) == ("cooling_device0", "pwm-fan", 2, 4)
