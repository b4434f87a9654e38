"""The simulated Pi 5: its model, the tree it writes (read back by the real readers), and the closed
loop on a real process (CPU use measured, the process slowed with SIGSTOP/SIGCONT)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time

import pytest

from edgeship.errors import InputError
from edgeship.monitor import sensors
from edgeship.monitor.plant import PI5_BARE, PlantDriver, ThermalPlant, firmware_clock
from edgeship.monitor.thermal import limits_from_trips, read_sample


def test_firmware_cuts_the_clock_between_80_and_85():
    assert firmware_clock(PI5_BARE, 79.9) == 2_400_000
    assert firmware_clock(PI5_BARE, 80.0) == 2_400_000
    assert firmware_clock(PI5_BARE, 82.5) == 1_900_000  # halfway: 1.95 GHz, rounded down to a 100 MHz step
    assert firmware_clock(PI5_BARE, 85.0) == 1_500_000
    assert firmware_clock(PI5_BARE, 95.0) == 1_500_000


def test_a_bare_pi5_reaches_80_in_about_three_minutes_and_the_firmware_holds_it_below_85(tmp_path):
    plant = ThermalPlant(PI5_BARE, tmp_path)
    assert plant.temp_c == pytest.approx(50.0)  # idle
    reached = None
    for step in range(1, 601):  # 2 s steps: 20 minutes
        plant.step(2.0, util=1.0)
        if reached is None and plant.temp_c >= 80.0:
            reached = 2 * step
    assert 150 <= reached <= 210
    assert 80.0 < plant.temp_c < 85.0 and plant.clock_khz < 2_400_000  # throttled equilibrium
    assert PI5_BARE.settle_c(1.0) == pytest.approx(95.0)  # what it would reach unthrottled
    for _ in range(600):
        plant.step(2.0, util=0.0)
    assert plant.temp_c < 51.0 and plant.clock_khz == 2_400_000
    assert plant.throttled_bits == 0xA0000  # nothing now; capped and soft limit since boot


def test_the_tree_is_what_the_readers_accept(tmp_path):
    plant = ThermalPlant(PI5_BARE, tmp_path, temp_c=83.0)
    temp = sensors.cpu_temperature(tmp_path)
    assert temp.celsius == pytest.approx(83.0) and temp.source == "thermal_zone0 (cpu-thermal)"
    status = sensors.throttle_status(tmp_path)
    assert status.pi.soft_temp_limit_now and status.pi.freq_capped_now and not status.pi.throttled_now
    assert [f.name for f in status.cpus] == ["cpu0", "cpu1", "cpu2", "cpu3"]
    assert status.min_cpu_ratio == pytest.approx(plant.clock_khz / 2_400_000)
    sample = read_sample(tmp_path)
    assert sample.firmware_throttling and sample.clock_khz == plant.clock_khz
    assert limits_from_trips(tmp_path).shutdown_c == 110.0  # the Pi 5's cpu-crit trip
    plant.step(1.0, 0.0)
    assert not list(tmp_path.rglob(".*.tmp"))  # atomic replacement leaves no temp files


def test_bad_parameters_are_refused():
    with pytest.raises(InputError, match="inconsistent"):
        dataclasses.replace(PI5_BARE, soft_c=90.0)


@pytest.fixture
def spinner():
    """A real process that burns one core until killed."""
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    yield proc
    proc.kill()
    proc.wait()


def test_the_driver_slows_a_real_process_and_heats_with_its_cpu_use(tmp_path, spinner):
    import psutil

    plant = ThermalPlant(PI5_BARE, tmp_path, temp_c=84.0)  # the firmware allows 1.6 GHz: 2/3 duty
    duty = plant.clock_khz / PI5_BARE.f_max_khz
    proc = psutil.Process(spinner.pid)
    time.sleep(0.2)
    cpu0, t0 = sum(proc.cpu_times()[:2]), time.monotonic()
    driver = PlantDriver(plant, spinner.pid, load_cores=1.0, period_s=0.05, time_scale=1.0).start()
    time.sleep(1.5)
    driver.stop()
    used = sum(proc.cpu_times()[:2]) - cpu0
    wall = time.monotonic() - t0
    # Stopped for a third of each period, it cannot use more than its duty (plus a tick of slack);
    # a loaded machine can only make it use less.
    assert used / wall <= duty + 0.15, (used, wall, duty)
    assert driver.trace and max(p.util for p in driver.trace) > 0.2
    assert proc.status() != psutil.STATUS_STOPPED  # resumed at the end
    assert driver.error is None
    summary = driver.summary()
    assert summary["time_above_limit_s"] > 1.0 and summary["time_throttled_s"] > 1.0


def test_time_scale_runs_the_thermal_model_faster(tmp_path, spinner):
    plant = ThermalPlant(PI5_BARE, tmp_path)
    driver = PlantDriver(plant, spinner.pid, load_cores=1.0, time_scale=100.0).start()
    time.sleep(1.0)
    driver.stop()
    assert driver.trace[-1].sim_s > 50.0  # about 100 s of the Pi in 1 s
    assert plant.temp_c > 55.0


def test_a_process_that_ends_stops_the_driver(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.3)"])
    driver = PlantDriver(ThermalPlant(PI5_BARE, tmp_path), proc.pid, load_cores=1.0).start()
    proc.wait()
    driver._thread.join(5)
    assert not driver._thread.is_alive()
    driver.stop()
