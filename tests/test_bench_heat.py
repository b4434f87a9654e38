"""Heat-aware `edgeship bench`: temperature, clock and throttle flags sampled during the run, the
"thermally unstable" verdict, and sustained runs with throughput over time."""

from __future__ import annotations

import json
import threading

import pytest

from edgeship.bench.heat import HeatSampler
from edgeship.cli import main
from edgeship.monitor.plant import PI5_BARE, ThermalPlant
from edgeship.monitor.thermal import Sample


class Heater:
    """Steps a simulated Pi in a thread once the benchmark's sampler has started: 10 s of full load
    every 20 ms."""

    def __init__(self, plant: ThermalPlant, monkeypatch):
        import edgeship.bench.runner as runner

        self.plant = plant
        self.go = threading.Event()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        go = self.go

        class Sampler(HeatSampler):
            def start(self):
                started = super().start()
                go.set()
                return started

        monkeypatch.setattr(runner, "HeatSampler", Sampler)

    def _run(self):
        self.go.wait()
        while not self.stop.wait(0.02):
            self.plant.step(10.0, util=1.0)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def test_a_sustained_run_that_heats_past_80_is_thermally_unstable(tiny_bundle, tmp_path, capsys, monkeypatch):
    root = tmp_path / "pi"
    plant = ThermalPlant(PI5_BARE, root, temp_c=77.0)
    out = tmp_path / "b.json"
    with Heater(plant, monkeypatch):
        rc = main(["bench", str(tiny_bundle.root), "--duration", "1.2", "--window", "0.2", "--warmup", "1",
                   "--threads", "1", "--sensors-root", str(root), "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "THERMALLY UNSTABLE" in text and "sustained" in text
    r = json.loads(out.read_text())["results"][0]
    heat = r["heat"]
    assert heat["thermally_unstable"] is True
    assert any("clock fell" in why for why in heat["reasons"])
    assert any("firmware reported throttling" in why for why in heat["reasons"])
    assert "soft_temp_limit" in heat["throttle_flags_seen"]
    assert heat["temp_c"]["max"] > 80.0 > heat["temp_c"]["start"]
    assert heat["clock_khz"]["start"] == 2_400_000 and heat["clock_khz"]["min"] < 2_400_000
    entry = r["batches"]["1"]
    windows = entry["fps_over_time"]
    assert entry["duration_s"] == 1.2 and len(windows) >= 4
    assert all(w["items_per_s"] > 0 and w["seconds"] > 0 for w in windows)
    assert windows[-1]["temp_c"] > windows[0]["temp_c"]  # the temperature of each window is recorded
    assert windows[-1]["clock_khz"] < windows[0]["clock_khz"]
    assert entry["runs"] == pytest.approx(sum(w["items_per_s"] * w["seconds"] for w in windows), rel=0.01)


def test_a_cool_run_is_stable_and_a_host_without_sensors_is_not_available(tiny_bundle, tmp_path, capsys):
    root = tmp_path / "pi"
    ThermalPlant(PI5_BARE, root)  # idle at 50 C, full clock, nothing flagged
    out = tmp_path / "b.json"
    assert main(["bench", str(tiny_bundle.root), "--runs", "20", "--warmup", "1", "--sensors-root", str(root),
                 "--json", str(out)]) == 0
    heat = json.loads(out.read_text())["results"][0]["heat"]
    assert heat["thermally_unstable"] is False and heat["reasons"] == [] and heat["samples"] >= 2
    assert "stable (max 50.0 °C" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["bench", str(tiny_bundle.root), "--runs", "5", "--warmup", "0", "--sensors-root", str(empty),
                 "--json", str(out)]) == 0
    heat = json.loads(out.read_text())["results"][0]["heat"]
    assert heat["thermally_unstable"] is None and heat["clock_khz"] is None  # not "stable": unknown


def sampler_with(samples):
    s = HeatSampler("/nonexistent")
    s.samples = [(float(i), x) for i, x in enumerate(samples)]
    return s


def test_clock_drop_is_measured_from_the_peak_before_it():
    # An idle clock that ramps up is not a fall; a fall of 4% is within tolerance; 10% is not.
    ok = sampler_with([Sample(50.0, clock_khz=1_500_000), Sample(51.0, clock_khz=2_400_000),
                       Sample(52.0, clock_khz=2_304_000)]).summary()
    assert ok["thermally_unstable"] is False and ok["clock_drop"] == pytest.approx(0.04)
    bad = sampler_with([Sample(50.0, clock_khz=2_400_000), Sample(60.0, clock_khz=2_160_000)]).summary()
    assert bad["thermally_unstable"] is True and bad["reasons"] == ["the CPU clock fell 10% (2400 -> 2160 MHz)"]


def test_a_throttle_between_two_samples_shows_in_the_since_boot_bits():
    s = sampler_with([Sample(70.0, flags=frozenset(), throttled_raw=0x0),
                      Sample(70.0, flags=frozenset(), throttled_raw=0x40000)]).summary()
    assert s["thermally_unstable"] is True and "between two samples" in s["reasons"][0]
    under_voltage_only = sampler_with([Sample(70.0, flags=frozenset(), throttled_raw=0),
                                       Sample(70.0, flags=frozenset(), throttled_raw=0x10000)]).summary()
    assert under_voltage_only["thermally_unstable"] is False  # bit 16 is under-voltage, not heat


@pytest.mark.parametrize("argv, message", [
    (["--duration", "0"], "expected a positive number"),
    (["--window", "-1"], "expected a positive number"),
])
def test_bad_duration_flags(tiny_bundle, argv, message, capsys):
    assert main(["bench", str(tiny_bundle.root), *argv]) == 2
    assert message in capsys.readouterr().err
