"""How the LLM shares the cores with the vision models, so a vision request never waits behind it.

>>> activity = VisionActivity()
>>> worker = ModelWorker(model, config, metrics, pool, activity=activity)   # counts its requests
>>> lower_llm_threads(engine)             # on the LLM's thread, once: it and its workers at nice 19
>>> engine.pace = activity.pacer(LLMSharing.PAUSE)                          # pause: between two tokens

Vision and the LLM never share a queue or a thread: vision requests go to their model's worker,
LLM requests to the LLM's own thread, and tokens cross to the event loop without blocking it. What
they share is the cores. Three settings (``serve --llm-sharing``):

- ``off``: the kernel splits the cores between them as it likes.
- ``priority`` (default): the LLM's thread runs at nice 19, and so do the compute threads
  llama.cpp starts from it (OpenMP workers; a new thread inherits its creator's nice value on
  Linux). While a vision request has work, the kernel gives its threads the cores (weight 1024
  against 15), and the LLM has every cycle they leave.
- ``pause``: ``priority``, and between two tokens a generation also waits while any vision
  request is in flight (from its decode to its answer), at most PAUSE_MAX_S each time; the LLM
  then also idles while a request is being decoded or answered and a core is free.

Why ``priority`` is the default, and why the whole LLM thread is niced rather than only
llama.cpp's workers (the thread computes its share of every product too): runs on a loaded 2-core
machine, in docs/benchmarks/pipeline.md. The cost of nice 19: the LLM gets almost no CPU while
other processes keep the cores busy, and if its thread is preempted while it holds the GIL, the
server's other threads wait until it runs again. On a device that runs only this server neither
happens; where other busy processes run, ``off`` keeps the LLM going.

bench/pipeline.py measures each: the vision p99 at a steady rate, alone and while the LLM
generates without a break, and the LLM's tokens per second alone and shared.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Callable

from .batching import _lowest_priority_for_new_threads
from .config import LLMSharing

log = logging.getLogger("edgeship.serve")

LLM_NICE = 19
# The longest a generation waits between two tokens for vision requests to finish. A burst of
# vision requests can then slow the LLM to about 1/PAUSE_MAX_S tokens a second, never stop it.
PAUSE_MAX_S = 0.2
COMPUTE_THREAD_NAME = "edgeship-llm"


class VisionActivity:
    """How many vision requests are in flight (counted on the event loop); others may wait for none."""

    def __init__(self) -> None:
        self.busy = 0
        self.pauses = 0  # times a generation waited for vision
        self.paused_s = 0.0  # and for how long in all
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
        t0 = time.perf_counter()
        with self._cv:
            self.pauses += 1
            idle = self._cv.wait_for(lambda: self.busy == 0, timeout)
        self.paused_s += time.perf_counter() - t0
        return idle

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


def lower_llm_threads(engine) -> list[int]:
    """On the LLM's thread, before its first generation: it and llama.cpp's compute threads at nice 19.

    OpenMP starts its workers at the first parallel region and keeps them; one token evaluated
    here (then forgotten) starts them now, named COMPUTE_THREAD_NAME. Returns their thread ids.
    """
    if not lower_this_thread():
        return []
    reniced: list[int] = []
    token = engine.tokenize("a", add_bos=False).tokens[:1]
    with _lowest_priority_for_new_threads(COMPUTE_THREAD_NAME, reniced):
        engine.llama.eval(token)
    engine.reset()
    return reniced


__all__ = ["COMPUTE_THREAD_NAME", "LLM_NICE", "PAUSE_MAX_S", "VisionActivity", "lower_llm_threads",
           "lower_this_thread"]
