"""Sensor readers against fake /sys trees built in tmp_path; the empty tree gives None, never a number."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from edgeship.monitor import EnergyMeter, cpu_temperature, decode_throttled, system_gauges, throttle_status
from edgeship.monitor.energy import Source, energy_counters, power_gauges, power_sensors, total_power_gauges
from edgeship.monitor.sensors import cpu_frequencies, devfreq_frequencies, thermal_zones
from tests.support import tree

RAPL_MAX = 262143328850


def runner_for(outputs: dict[str, str]):
    calls = []

    def run(argv):
        calls.append(list(argv))
        return outputs.get(argv[-1])

    run.calls = calls
    return run


# --- temperature -------------------------------------------------------------------------


def test_cpu_zone_is_chosen_over_other_zones(tmp_path):
    tree(tmp_path, {
        "sys/class/thermal/thermal_zone0/type": "acpitz", "sys/class/thermal/thermal_zone0/temp": 30000,
        "sys/class/thermal/thermal_zone1/type": "x86_pkg_temp", "sys/class/thermal/thermal_zone1/temp": 55000,
    })
    reading = cpu_temperature(tmp_path)
    assert reading.celsius == 55.0
    assert "thermal_zone1" in reading.source and "x86_pkg_temp" in reading.source
    assert [z.type for z in thermal_zones(tmp_path)] == ["acpitz", "x86_pkg_temp"]


def test_raspberry_pi_zone(tmp_path):
    tree(tmp_path, {"sys/class/thermal/thermal_zone0/type": "cpu-thermal",
                    "sys/class/thermal/thermal_zone0/temp": 48312})
    assert cpu_temperature(tmp_path).celsius == pytest.approx(48.312)


def test_hwmon_k10temp_prefers_tctl(tmp_path):
    tree(tmp_path, {
        "sys/class/hwmon/hwmon0/name": "nvme", "sys/class/hwmon/hwmon0/temp1_input": 40000,
        "sys/class/hwmon/hwmon1/name": "k10temp",
        "sys/class/hwmon/hwmon1/temp3_input": 50000, "sys/class/hwmon/hwmon1/temp3_label": "Tccd1",
        "sys/class/hwmon/hwmon1/temp1_input": 61250, "sys/class/hwmon/hwmon1/temp1_label": "Tctl",
    })
    reading = cpu_temperature(tmp_path)
    assert reading.celsius == 61.25 and "k10temp" in reading.source


def test_vcgencmd_through_injected_runner(tmp_path):
    run = runner_for({"measure_temp": "temp=47.2'C\n"})
    reading = cpu_temperature(tmp_path, runner=run)
    assert reading.celsius == 47.2 and reading.source == "vcgencmd measure_temp"
    assert run.calls == [["vcgencmd", "measure_temp"]]


def test_nothing_there_is_none(tmp_path):
    # A fake root never reaches the real machine's vcgencmd: no runner given, no command run.
    assert cpu_temperature(tmp_path) is None
    assert cpu_temperature(tmp_path, runner=runner_for({})) is None
    assert thermal_zones(tmp_path) == []
    status = throttle_status(tmp_path)
    assert status.pi is None and status.cpus == [] and status.throttled_now is None


def test_garbage_and_unreadable_files_are_no_sample(tmp_path):
    tree(tmp_path, {"sys/class/thermal/thermal_zone0/type": "cpu-thermal",
                    "sys/class/thermal/thermal_zone0/temp": "not a number"})
    (tmp_path / "sys/class/thermal/thermal_zone1").mkdir()
    (tmp_path / "sys/class/thermal/thermal_zone1/temp").mkdir()  # a folder: read fails with OSError
    assert cpu_temperature(tmp_path) is None
    assert [z.celsius for z in thermal_zones(tmp_path)] == [None, None]


# --- throttling --------------------------------------------------------------------------


def test_decode_throttled_bits():
    t = decode_throttled(0x50005)
    assert (t.under_voltage_now, t.freq_capped_now, t.throttled_now, t.soft_temp_limit_now) == (True, False, True, False)
    assert (t.under_voltage_since_boot, t.freq_capped_since_boot, t.throttled_since_boot) == (True, False, True)
    assert not t.soft_temp_limit_since_boot and t.any_now
    clean = decode_throttled(0)
    assert not clean.any_now and not clean.throttled_since_boot
    past = decode_throttled(0x80000)
    assert past.soft_temp_limit_since_boot and not past.any_now


def test_throttle_status_from_vcgencmd_and_cpufreq(tmp_path):
    tree(tmp_path, {
        "sys/devices/system/cpu/cpu0/cpufreq/scaling_cur_freq": 1500000,
        "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq": 2400000,
        "sys/devices/system/cpu/cpu1/cpufreq/scaling_cur_freq": 2400000,
        "sys/devices/system/cpu/cpu1/cpufreq/cpuinfo_max_freq": 2400000,
        "sys/devices/system/cpu/cpu2/cpufreq/scaling_cur_freq": 2400000,  # no max: skipped
    })
    status = throttle_status(tmp_path, runner=runner_for({"get_throttled": "throttled=0x80008\n"}))
    assert status.pi.soft_temp_limit_now and status.pi.soft_temp_limit_since_boot
    assert status.throttled_now is True
    assert [f.name for f in status.cpus] == ["cpu0", "cpu1"]
    assert status.min_cpu_ratio == pytest.approx(0.625)


def test_jetson_gpu_devfreq(tmp_path):
    tree(tmp_path, {"sys/class/devfreq/17000000.ga10b/cur_freq": 306000000,
                    "sys/class/devfreq/17000000.ga10b/max_freq": 918000000})
    (gpu,) = devfreq_frequencies(tmp_path)
    assert gpu.name == "17000000.ga10b" and gpu.ratio == pytest.approx(1 / 3)
    assert cpu_frequencies(tmp_path) == []


# --- energy and power --------------------------------------------------------------------


def rapl_tree(root: Path, package_uj: int) -> Path:
    return tree(root, {
        "sys/class/powercap/intel-rapl:0/name": "package-0",
        "sys/class/powercap/intel-rapl:0/energy_uj": package_uj,
        "sys/class/powercap/intel-rapl:0/max_energy_range_uj": RAPL_MAX,
        "sys/class/powercap/intel-rapl:0:0/name": "core",  # a subzone: part of the package
        "sys/class/powercap/intel-rapl:0:0/energy_uj": 5,
        "sys/class/powercap/intel-rapl:1/name": "psys",  # overlaps the package
        "sys/class/powercap/intel-rapl:1/energy_uj": 7,
    })


def set_uj(root: Path, value: int) -> None:
    (root / "sys/class/powercap/intel-rapl:0/energy_uj").write_text(f"{value}\n")


def test_rapl_counts_packages_only(tmp_path):
    rapl_tree(tmp_path, 1000)
    (counter,) = energy_counters(tmp_path)
    assert counter.name == "rapl package-0" and counter.max_range_uj == RAPL_MAX


def test_energy_meter_rapl(tmp_path):
    rapl_tree(tmp_path, 1_000)
    meter = EnergyMeter(tmp_path, counter_poll_s=60)
    assert meter.available and meter.method == "counter"
    meter.start()
    set_uj(tmp_path, 3_001_000)
    reading = meter.stop()
    assert reading.joules == pytest.approx(3.0) and reading.method == "counter"
    assert reading.source == "rapl package-0" and reading.seconds > 0


def test_energy_meter_rapl_wraps_around(tmp_path):
    rapl_tree(tmp_path, RAPL_MAX - 1_000_000)
    meter = EnergyMeter(tmp_path, counter_poll_s=60).start()
    set_uj(tmp_path, 500_000)
    assert meter.stop().joules == pytest.approx(1.5)


def test_rapl_present_but_unreadable_is_reported_not_used(tmp_path):
    tree(tmp_path, {"sys/class/powercap/intel-rapl:0/name": "package-0"})
    (tmp_path / "sys/class/powercap/intel-rapl:0/energy_uj").mkdir()  # unreadable like a 0400 file
    assert energy_counters(tmp_path) == []
    assert power_sensors(tmp_path) == ["rapl package-0 (present, not readable: needs root)"]
    assert not EnergyMeter(tmp_path).available


def test_hwmon_energy_counter(tmp_path):
    tree(tmp_path, {"sys/class/hwmon/hwmon0/name": "amd_energy", "sys/class/hwmon/hwmon0/energy1_input": 10})
    (counter,) = energy_counters(tmp_path)
    assert counter.source is Source.HWMON_ENERGY and counter.read_uj() == 10


def test_ina219_power_from_voltage_and_current(tmp_path):
    tree(tmp_path, {"sys/class/hwmon/hwmon2/name": "ina219",
                    "sys/class/hwmon/hwmon2/in0_input": 12,  # shunt voltage: no current pairs with it
                    "sys/class/hwmon/hwmon2/in1_input": 5000, "sys/class/hwmon/hwmon2/curr1_input": 1000})
    (gauge,) = power_gauges(tmp_path)
    assert gauge.source is Source.INA and gauge.read_w() == pytest.approx(5.0)
    meter = EnergyMeter(tmp_path, interval_s=0.01)
    assert meter.method == "sampled"
    meter.start()
    time.sleep(0.1)
    reading = meter.stop()
    assert reading.method == "sampled" and reading.samples >= 2
    assert reading.mean_watts == pytest.approx(5.0, rel=0.05)
    assert reading.joules == pytest.approx(5.0 * reading.seconds, rel=0.05)


def test_ina3221_uses_the_board_input_rail(tmp_path):
    hw = "sys/class/hwmon/hwmon1"
    tree(tmp_path, {
        f"{hw}/name": "ina3221",
        f"{hw}/in1_label": "VDD_IN", f"{hw}/in1_input": 5000, f"{hw}/curr1_input": 1600,
        f"{hw}/in2_label": "VDD_CPU_GPU_CV", f"{hw}/in2_input": 5000, f"{hw}/curr2_input": 400,
        f"{hw}/in3_label": "VDD_SOC", f"{hw}/in3_input": 5000, f"{hw}/curr3_input": 300,
    })
    gauges = power_gauges(tmp_path)
    assert len(gauges) == 3
    (total,) = total_power_gauges(gauges)
    assert total.name == "ina3221 VDD_IN" and total.read_w() == pytest.approx(8.0)


def test_jetson_iio_rails(tmp_path):
    iio = "sys/bus/i2c/drivers/ina3221x/6-0040/iio:device0"
    tree(tmp_path, {f"{iio}/rail_name_0": "POM_5V_IN", f"{iio}/in_power0_input": 4000,
                    f"{iio}/rail_name_1": "POM_5V_GPU", f"{iio}/in_power1_input": 1000})
    gauges = power_gauges(tmp_path)
    assert {g.name for g in gauges} == {"jetson POM_5V_IN", "jetson POM_5V_GPU"}
    (total,) = total_power_gauges(gauges)
    assert total.source is Source.JETSON_RAIL and total.read_w() == pytest.approx(4.0)
    assert EnergyMeter(tmp_path).source == "jetson POM_5V_IN"


def test_hwmon_power_microwatts(tmp_path):
    tree(tmp_path, {"sys/class/hwmon/hwmon3/name": "power_meter", "sys/class/hwmon/hwmon3/power1_input": 12_000_000})
    (gauge,) = power_gauges(tmp_path)
    assert gauge.source is Source.HWMON_POWER and gauge.read_w() == pytest.approx(12.0)


def test_no_power_sensor(tmp_path):
    meter = EnergyMeter(tmp_path)
    assert not meter.available and meter.source is None
    meter.start()
    assert meter.stop() is None
    assert power_sensors(tmp_path) == []
    with pytest.raises(RuntimeError, match="expected state running, got idle"):
        meter.stop()


def test_meter_as_context_manager(tmp_path):
    rapl_tree(tmp_path, 0)
    with EnergyMeter(tmp_path, counter_poll_s=60) as meter:
        set_uj(tmp_path, 250_000)
    assert meter.reading.joules == pytest.approx(0.25)


# --- system gauges -----------------------------------------------------------------------


def test_system_gauges(tmp_path):
    system_gauges(tmp_path)
    g = system_gauges(tmp_path)
    assert isinstance(g.cpu_percent, float)
    assert g.rss_bytes > 0 and g.available_memory_bytes > 0 and g.disk_free_bytes > 0
