"""Crash points: where the kill -9 harness may stop this process, from the inside, at a random point.

A step of an update (staging, the switch, the commit) takes microseconds; a SIGKILL sent from
outside at a random time almost never lands inside it. So each durable operation (write, fsync,
rename, link, unlink) passes a crash point, and the harness sets ``EDGESHIP_OTA_CRASH=STEP:N``:
the process sends itself SIGKILL at the N-th crash point inside STEP (an operating-system kill, as
from outside: no handler, no cleanup). Steps that take long (download, canary) are killed from
outside at random times as well. Without the variable a crash point costs one attribute read.

>>> with faults.step("staging"):
...     faults.point()            # may not return when the harness says so
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Iterator

_PLAN: tuple[str, int] | None = None
_TRACE = os.environ.get("EDGESHIP_OTA_TRACE")  # a file: "begin STEP" / "end STEP" lines, for the harness
_step: str | None = None
_count = 0


def _load() -> None:
    global _PLAN
    raw = os.environ.get("EDGESHIP_OTA_CRASH", "")
    if ":" in raw:
        name, _, n = raw.partition(":")
        _PLAN = (name, int(n))


_load()


def _trace(line: str) -> None:
    if _TRACE:
        import time

        with open(_TRACE, "a") as f:
            f.write(f"{time.monotonic():.6f} {os.getpid()} {line}\n")
            f.flush()


@contextlib.contextmanager
def step(name: str) -> Iterator[None]:
    global _step, _count
    outer, outer_count = _step, _count
    _step, _count = name, 0
    _trace(f"begin {name}")
    try:
        yield
        if _PLAN is not None and _PLAN[0] == name:  # fewer durable operations than planned: stop at the last
            _count = _PLAN[1] - 1
            point()
    finally:
        _trace(f"end {name} {_count}")
        _step, _count = outer, outer_count


def point() -> None:
    global _count
    _count += 1
    if _PLAN is None or _step != _PLAN[0]:
        return
    if _count >= _PLAN[1]:
        _trace(f"crash {_step} {_count}")
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)
