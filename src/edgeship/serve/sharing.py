"""How the LLM shares the cores with the vision models, so a vision request never waits behind it.

>>> activity = VisionActivity()
>>> worker = ModelWorker(model, config, metrics, pool, activity=activity)   # counts its requests
>>> llm = LLMService(path, thread_setup=llm_thread_setup(LLMSharing.PAUSE))  # nice 19 on Linux
>>> engine.pace = activity.pacer(LLMSharing.PAUSE)                          # between two tokens

Vision and the LLM never share a queue or a thread: vision requests go to their model's worker,
LLM requests to the LLM's own thread, and tokens cross to the event loop without blocking it. What
they do share is the cores. Three settings (``serve --llm-sharing``):

- ``off``: both at the same priority; the kernel splits the cores between them.
- ``priority``: the LLM's thread runs at nice 19, and so do the OpenMP threads llama.cpp starts
  from it (a new thread inherits its creator's nice value on Linux). While a vision request has
  work to do, the kernel gives its threads the cores (weight 1024 against 15).
- ``pause`` (default): ``priority``, and between two tokens the generation also waits while any
  vision request is in flight (from its decode to its answer), for at most PAUSE_MAX_S each time.
  A token already under way is not interrupted; the next one starts after the vision answer.

bench/pipeline.py measures each: the vision p99 at a steady rate, alone and while the LLM
generates without a break, and the LLM's tokens per second alone and shared.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Callable

from .config import LLMSharing

log = logging.getLogger("edgeship.serve")

LLM_NICE = 19
# The longest a generation waits between two tokens for vision requests to finish. A burst of
# vision requests can then slow the LLM to about 1/PAUSE_MAX_S tokens a second, never stop it.
PAUSE_MAX_S = 0.2


class VisionActivity:
    """How many vision requests are in flight (counted on the event loop); others may wait for none."""

    def __init__(self) -> None:
        self.busy = 0
        self.pauses = 0  # times a generation waited for vision (read by tests and the bench)
        self._cv = threading.Condition()

    def enter(self) -> None:
        with self._cv:
            self.busy += 1

    def leave(self) -> None:
        with self._cv:
            self.busy -= 1
            if self.busy <= 0:
                self.busy = 0
                self._cv.notify_all()

    def wait_idle(self, timeout: float = PAUSE_MAX_S) -> bool:
        """Block until no vision request is in flight or ``timeout`` passes; True when idle."""
        if not self.busy:  # the common case costs no lock
            return True
        with self._cv:
            self.pauses += 1
            return self._cv.wait_for(lambda: self.busy == 0, timeout)

    def pacer(self, sharing: LLMSharing) -> Callable[[], object] | None:
        """What a generation calls between two tokens under ``sharing`` (None: nothing)."""
        return self.wait_idle if sharing is LLMSharing.PAUSE else None


def lower_this_thread(nice: int = LLM_NICE) -> bool:
    """Give the calling thread (and the threads it starts later) the nice value ``nice``; Linux only.

    ``os.setpriority(PRIO_PROCESS, tid)`` acts on one thread on Linux; elsewhere it would renice
    the whole process, so nothing is done there.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        return True
    except OSError as exc:
        log.warning("could not lower the LLM thread's priority: %s", exc)
        return False


def llm_thread_setup(sharing: LLMSharing) -> Callable[[], object] | None:
    """The LLM thread's initializer under ``sharing``: nice 19 for ``priority`` and ``pause``."""
    return None if sharing is LLMSharing.OFF else lower_this_thread


__all__ = ["LLM_NICE", "PAUSE_MAX_S", "VisionActivity", "llm_thread_setup", "lower_this_thread"]
