"""Waiting for the LLM and running on it, for routes other than the OpenAI ones (and their non-streamed form).

>>> reason = busy_reason(service)                  # None, or why a new request would be refused now
>>> async for piece in run_streamed(service, gen):  # waits its turn (FIFO), then the text as it comes
...     ...
>>> ok = await acquire_or_gone(service, request)   # False: the client left while it waited

The LLMService holds one generation at a time and at most ``queue_size`` waiting. A request that
waits holds a place in that queue; when its client goes away the place must be freed at once, not
when its turn comes. A streamed request gets that from Starlette, which cancels the response's
generator on disconnect (and with it the wait). A non-streamed one has no generator to cancel, so
``acquire_or_gone`` waits for the model and for the client's disconnect together.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, AsyncIterator, Callable, TypeVar

from .errors import LLMError
from .openai_protocol import OpenAIError

T = TypeVar("T")

# How often a waiting non-streamed request checks that its client is still there.
DISCONNECT_POLL_S = 0.1

# What the model's thread sends after the last piece of text: the end, or the error that stopped it.
_END = object()


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


def busy_reason(service) -> str | None:
    """Why a new request would be refused now (the queue is full), or None when it would be admitted.

    Checked and followed by ``run_streamed`` (or ``service._acquire``) with no await in between, the
    answer holds: the wait takes its place in the queue before it first yields to the event loop.
    """
    try:
        service._admit()
    except OpenAIError:
        return (f"the LLM is busy: one generation running and {service._waiting} waiting, the most it queues "
                f"(--llm-queue-size {service.queue_size})")
    return None


async def acquire_or_gone(service, request: Any) -> bool:
    """Wait for the model like ``service._acquire`` does; give up (False) as soon as the client disconnects."""
    wait = asyncio.ensure_future(service._acquire())
    try:
        while True:
            done, _ = await asyncio.wait({wait}, timeout=DISCONNECT_POLL_S)
            if done:
                wait.result()
                return True
            if await request.is_disconnected():
                wait.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await wait
                if wait.cancelled():
                    return False
                service._lock.release()  # it got the model just as the client left
                return False
    except BaseException:
        if not wait.done():
            wait.cancel()
        raise


async def on_model_thread(service, fn: Callable[[], T]) -> T:
    """Run ``fn`` on the model's thread when the model is free (in queue order); for work that must not
    interleave with a generation (warming a prompt cache, preparing the compute threads)."""
    await service._acquire()
    try:
        return await asyncio.get_running_loop().run_in_executor(service._executor, fn)
    finally:
        service._lock.release()


class GenerationFailed(LLMError):
    """llama.cpp failed while generating; the original error is the cause."""


async def run_streamed(service, gen) -> AsyncIterator[str]:
    """Wait for the model, run ``gen`` on its thread, and yield its text as it comes.

    Leaving the loop early (the client went away, the response was cancelled) sets the generation's
    cancel flag: the model stops after the token under way and takes the next request.
    """
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()
    put, call_soon = queue.put_nowait, loop.call_soon_threadsafe

    def emit(item: Any) -> None:  # runs in the model's thread
        call_soon(put, item)

    try:
        await service._acquire()
        service._submit(gen, emit)
        while True:
            item = await queue.get()
            items = [item]
            while queue.qsize():  # pieces that arrived together leave together
                items.append(queue.get_nowait())
            for item in items:
                if item.__class__ is str:
                    yield item
                elif item is _END:
                    return
                elif isinstance(item, _Failed):
                    raise GenerationFailed(f"generation failed: {item.exc}") from item.exc
    finally:
        gen.cancel.set()


__all__ = ["DISCONNECT_POLL_S", "GenerationFailed", "acquire_or_gone", "busy_reason", "on_model_thread",
           "run_streamed"]
