"""What ``bench`` is asked to do, as a frozen dataclass whose fields are also its flags.

>>> BenchConfig(batches=(1, 8), threads=2).progress_units
100

Light on purpose (no numpy, no runtime): ``edgeship --help`` builds ``bench``'s flags from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .._config import cli, csv_ints, non_negative_int, positive_float, positive_int
from ..errors import InputError

if TYPE_CHECKING:
    from ..runtime.config import RuntimeConfig


@dataclass(frozen=True)
class BenchConfig:
    # The inference batch: the one meaning of --batch in every verb (export's is --graph-batch).
    batches: tuple[int, ...] = field(default=(1,), metadata=cli(
        "inference batch sizes, comma-separated", flag="--batch", type=csv_ints, metavar="1,8"))
    threads: int | None = field(default=None, metadata=cli(
        "intra-op threads (default: the --target's, else the engine's; never more than this host's usable cores)",
        type=positive_int))
    warmup: int = field(default=10, metadata=cli("untimed runs first", type=non_negative_int))
    runs: int = field(default=100, metadata=cli("timed runs per batch size", type=positive_int))
    vs_torch: bool = field(default=False, metadata=cli("time the source PyTorch model beside it"))
    sensors_root: str = "/"
    runtime: RuntimeConfig | None = None  # a target preset's config; threads override it
    duration_s: float | None = field(default=None, metadata=cli(  # a sustained run: seconds per batch size
        "a sustained run: time each batch size for this long instead of --runs times; the JSON gets the "
        "throughput of every --window with the temperature and clock", flag="--duration", type=positive_float,
        metavar="SECONDS"))
    window_s: float = field(default=1.0, metadata=cli(
        "throughput windows of a sustained run, in seconds", flag="--window", type=positive_float,
        metavar="SECONDS"))
    heat_interval_s: float = 0.5  # how often the sensors are read during the run

    def __post_init__(self) -> None:
        if not self.batches or min(self.batches) < 1:
            raise InputError(f"--batch: positive sizes required, got {list(self.batches)}")
        if self.runs < 1 or self.warmup < 0:
            raise InputError(f"--runs must be at least 1 and --warmup at least 0 (got {self.runs}, {self.warmup})")
        if self.duration_s is not None and not self.duration_s > 0:
            raise InputError(f"--duration: expected a positive number of seconds, got {self.duration_s!r}")
        if not (self.window_s > 0 and self.heat_interval_s > 0):
            raise InputError(f"window_s and heat_interval_s must be positive (got {self.window_s}, {self.heat_interval_s})")

    @property
    def progress_units(self) -> float:
        """What one batch size adds to a progress bar: timed runs, or seconds of a sustained run."""
        return self.duration_s if self.duration_s is not None else self.runs

    def session_config(self) -> RuntimeConfig:
        from ..runtime.config import RuntimeConfig

        base = self.runtime or RuntimeConfig()
        return base.replace(intra_op_threads=self.threads)
