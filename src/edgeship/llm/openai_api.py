"""OpenAI-compatible endpoints for a GGUF model: ``POST /v1/chat/completions`` and ``POST /v1/completions``.

>>> service = LLMService("SmolLM2-135M-Instruct.Q4_1.gguf", n_threads=2, registry=registry)
>>> app = Starlette(routes=[*create_llm_router(service)], lifespan=...)  # the lifespan awaits service.start()

How a request flows: it takes a place in the queue first (503 with ``Retry-After`` when
``queue_size`` are waiting); then, in a thread of its own (a long prompt never stalls the event
loop, so health checks keep answering), the body is validated (no pydantic) with its size bounded
before any template or tokenizer work (``RequestLimits``: messages, bytes of text, JSON depth),
the prompt rendered and tokenised, and its length checked against the context (400 saying by how
many tokens). Then it waits for the model: one generation at a time. The generation runs in the service's single worker thread; each token's
text crosses to the event loop with ``loop.call_soon_threadsafe`` into an ``asyncio.Queue`` and
leaves as a pre-serialised server-sent event (tokens that arrived together leave in one write).
A client that disconnects sets the generation's cancel flag, checked between tokens, and the
model is free for the next request as soon as the current token is done.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, AsyncIterator

from ..errors import InputError
from .errors import ContextLengthError
from .openai_protocol import (
    CHAT,
    ChunkEncoder,
    Endpoint,
    GenerationRequest,
    OpenAIError,
    RequestLimits,
    parse_request,
    response,
    usage,
)
from .queueing import _END, _Failed, acquire_or_gone
from .refusals import _PATHS, embeddings_refused, log_refusal, refusal

if TYPE_CHECKING:
    from .engine import Engine, Prompt


class ServiceState(str, enum.Enum):
    NEW = "new"
    LOADING = "loading"
    READY = "ready"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"


# The transitions the service allows; anything else is a bug in the caller (start twice, ...).
_TRANSITIONS = {
    ServiceState.NEW: {ServiceState.LOADING, ServiceState.STOPPED},
    ServiceState.LOADING: {ServiceState.READY, ServiceState.FAILED},
    ServiceState.READY: {ServiceState.STOPPING},
    ServiceState.STOPPING: {ServiceState.STOPPED},
    ServiceState.FAILED: {ServiceState.STOPPED},
    ServiceState.STOPPED: set(),
}


def _emit_quietly(emit, item: Any) -> None:
    try:
        emit(item)
    except RuntimeError:  # event loop closed: nobody is listening any more
        pass


def _model_name(model_path: Path) -> str:
    """The bundle's name for a bundle folder, the file stem for a bare .gguf (no hashing, no loading)."""
    if model_path.is_dir():
        from ..bundle import read_manifest

        return read_manifest(model_path).name
    return model_path.stem


class LLMService:
    """One GGUF model behind the OpenAI endpoints: its lifecycle, its queue, its worker thread, its metrics."""

    def __init__(self, model_path: str | os.PathLike, *, n_ctx: int = 2048, n_threads: int | None = None,
                 queue_size: int = 8, registry: Any = None, max_tokens: int | None = None,
                 limits: RequestLimits = RequestLimits()):
        """``max_tokens``: the most a request may ask for (400 beyond; a request that does not say gets
        it, or what the context leaves); None: no limit but the context. ``limits``: what one request
        may hold, checked before any tokenizer work (its prompt bytes default to the context length
        times the vocabulary's longest token)."""
        from .engine import LoadConfig
        from .metrics import LLMMetrics

        if queue_size < 0:
            raise ValueError(f"queue_size: expected 0 or more, got {queue_size}")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens: expected a positive integer or None, got {max_tokens}")
        self.max_tokens = max_tokens
        from .model_file import locate

        self.model_path = locate(model_path)
        self.name: str = _model_name(self.model_path)
        self.load_config = LoadConfig(n_ctx=n_ctx, n_threads=n_threads)
        self.queue_size = queue_size
        self.limits = limits
        self.metrics = LLMMetrics(self.name, registry)
        self.engine: Engine | None = None
        self.state = ServiceState.NEW
        self.error: str | None = None
        self.sha256: str | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._prep: ThreadPoolExecutor | None = None  # templates and tokenisation, off the event loop
        self._lock: asyncio.Lock | None = None
        self._waiting = 0
        self._preparing = 0
        self._busy = False
        self._avg_request_s = 1.0  # for Retry-After: a moving average of request durations
        self._created = int(time.time())

    def memory_parts(self) -> list:
        """What serving this model will hold (weights, KV cache for n_ctx, compute), known before loading it."""
        from .memory import llm_parts
        from .model_file import resolve_gguf

        path, _ = resolve_gguf(self.model_path)
        return llm_parts(path, self.load_config.n_ctx, self.load_config.n_batch, self.name)

    # -- lifecycle ---------------------------------------------------------------------------------

    def _move(self, to: ServiceState) -> None:
        if to not in _TRANSITIONS[self.state]:
            allowed = ", ".join(s.value for s in _TRANSITIONS[self.state]) or "none"
            raise RuntimeError(f"LLMService {self.name}: cannot go to {to.value} from {self.state.value} "
                               f"(expected a move to {allowed})")
        self.state = to

    async def start(self) -> None:
        """Verify and load the model in the worker thread; the event loop keeps serving meanwhile."""
        self._move(ServiceState.LOADING)
        self._lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llm-{self.name}")
        self._prep = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"llm-prep-{self.name}")
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._load)
        except BaseException as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            self._move(ServiceState.FAILED)
            raise
        self._move(ServiceState.READY)

    def _load(self) -> None:
        from ..bundle.cache import file_sha256
        from .engine import Engine
        from .model_file import bundle_sha256, resolve_gguf

        path, name = resolve_gguf(self.model_path)  # verifies a bundle's sha256s
        self.sha256 = bundle_sha256(self.model_path) or file_sha256(path)  # hashed once per file version
        engine = self.engine = Engine.load(path, self.load_config, name=self.name)
        if self.limits.max_prompt_bytes is None:
            bound = engine.n_ctx * engine.max_piece_bytes
            self.limits = dataclasses.replace(self.limits, max_prompt_bytes=bound)

    async def stop(self) -> None:
        """Refuse new requests, let the running and already-queued ones finish, then free the model."""
        if self.state in (ServiceState.NEW, ServiceState.FAILED):
            self._move(ServiceState.STOPPED)
        if self.state is ServiceState.STOPPED:
            self._shutdown_executor()
            return
        self._move(ServiceState.STOPPING)
        assert self._lock is not None and self._executor is not None
        if self._prep is not None:  # a prompt being tokenised must finish before the model is freed
            prep, self._prep = self._prep, None
            await asyncio.get_running_loop().run_in_executor(None, prep.shutdown, True)
        async with self._lock:
            engine, self.engine = self.engine, None
            if engine is not None:
                await asyncio.get_running_loop().run_in_executor(self._executor, engine.close)
        self._move(ServiceState.STOPPED)
        self._shutdown_executor()

    def _shutdown_executor(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        if self._prep is not None:
            self._prep.shutdown(wait=False, cancel_futures=True)
            self._prep = None

    def ready(self) -> tuple[bool, str]:
        if self.state is ServiceState.READY:
            return True, "ready"
        if self.state is ServiceState.FAILED:
            return False, f"failed to load: {self.error}"
        return False, self.state.value

    def model_card(self) -> dict[str, Any]:
        """The model's entry in ``GET /v1/models``."""
        info = self.engine.info if self.engine is not None else None
        try:
            created = int(self.model_path.stat().st_mtime)
        except OSError:
            created = self._created
        return {
            "id": self.name,
            "object": "model",
            "created": created,
            "owned_by": "edgeship",
            "format": "gguf",
            "sha256": self.sha256,
            "quantization": info.quantization if info else None,
            "context_length": info.context_length if info else self.load_config.n_ctx,
        }

    # -- requests ----------------------------------------------------------------------------------

    def _check_ready(self) -> None:
        if self.state is ServiceState.READY and self.engine is not None:
            return
        ok, why = self.ready()
        raise OpenAIError(503, f"The model '{self.name}' is not available ({why}); retry shortly.",
                          type="server_error", code="model_not_ready", headers={"Retry-After": "1"})

    def _admit(self) -> None:
        # Requests being tokenised wait too: count them, so that a flood of long prompts is refused
        # here, before any of them costs template or tokenizer work.
        pending = self._waiting + self._preparing
        if pending >= self.queue_size + (0 if self._busy else 1):
            retry = max(1, math.ceil(self._avg_request_s * (pending + 1)))
            raise OpenAIError(
                503, f"The model '{self.name}' is busy: {int(self._busy)} request running and {pending} waiting, the "
                     "most this server queues. Retry after the time in the Retry-After header.",
                type="server_error", code="queue_full", headers={"Retry-After": str(retry)})

    def prepare(self, req: GenerationRequest):
        """Validated request -> a ready-to-run Generation (template, tokens, context check)."""
        from .engine import SamplingConfig, check_fits

        if req.model is not None and req.model != self.name:
            raise OpenAIError(404, f"The model '{req.model}' does not exist; this server serves '{self.name}'.",
                              param="model", code="model_not_found")
        self._check_ready()
        engine = self.engine
        assert engine is not None  # _check_ready: the model is loaded
        prompt: Prompt | list[int]
        if req.endpoint is CHAT:
            try:
                prompt = engine.chat_prompt(req.messages)
            except InputError as exc:
                raise OpenAIError(400, str(exc), param="messages", code="invalid_value") from None
        elif isinstance(req.prompt, list):
            n_vocab = engine.info.vocab_size
            bad = next((t for t in req.prompt if not 0 <= t < n_vocab), None)
            if bad is not None:
                raise OpenAIError(400, f"Invalid 'prompt': token id {bad} is outside this model's vocabulary "
                                       f"(0 to {n_vocab - 1}).", param="prompt", code="invalid_value")
            prompt = req.prompt
        else:
            # A completion prompt is the caller's whole text, template included: its special tokens
            # are meant (llama.cpp's server reads them the same way). Chat contents never are.
            prompt = engine.tokenize(req.prompt, add_bos=True, special=True)
        n_prompt = len(prompt)
        if n_prompt == 0:
            raise OpenAIError(400, "The prompt is empty.", param="prompt", code="invalid_value")
        max_tokens = self.capped_max_tokens(req.max_tokens, n_prompt)
        try:
            check_fits(n_prompt, max_tokens, engine.n_ctx)
        except ContextLengthError as exc:
            raise OpenAIError(400, str(exc), param="messages" if req.endpoint is CHAT else "prompt",
                              code="context_length_exceeded") from None
        grammar = None
        if req.response_format is not None:
            from .grammar import response_grammar

            try:
                grammar = response_grammar(*req.response_format)
            except InputError as exc:
                raise OpenAIError(400, str(exc), param="response_format", code="invalid_value") from None
        sampling = SamplingConfig(
            max_tokens=max_tokens, temperature=req.temperature, top_p=max(req.top_p, 1e-6),
            # Server-side guards kept from llama.cpp's defaults; the API has no names for them.
            top_k=40, min_p=0.05, stop=req.stop, seed=req.seed,
            frequency_penalty=req.frequency_penalty, presence_penalty=req.presence_penalty, grammar=grammar,
        )
        return engine.generate(prompt, sampling, cancel=threading.Event())

    def _read(self, raw: bytes, endpoint: Endpoint) -> tuple[GenerationRequest, Any]:
        """The prompt thread: parse the body (bounded by ``limits``), render and tokenise the prompt."""
        req = parse_request(raw, endpoint, self.limits)
        return req, self.prepare(req)

    def capped_max_tokens(self, asked: int | None, n_prompt: int = 0) -> int | None:
        """``asked`` checked against the server's limit (OpenAIError 400 beyond it); None: the limit,
        or what the context leaves after ``n_prompt`` when that is less."""
        limit = self.max_tokens
        if limit is None:
            return asked
        if asked is not None and asked > limit:
            raise OpenAIError(400, f"Invalid 'max_tokens': {asked} is over this server's limit of {limit} tokens "
                                   "per request; ask for fewer.", param="max_tokens", code="max_tokens_over_limit")
        if asked is None and self.engine is not None:
            return max(1, min(limit, self.engine.n_ctx - n_prompt))
        return asked or limit

    async def _acquire(self) -> None:
        """Wait for the model (FIFO); the lock is released by the generation's done-callback."""
        assert self._lock is not None
        self._waiting += 1
        self.metrics.queue.set(self._waiting)
        try:
            await self._lock.acquire()
        finally:
            self._waiting -= 1
            self.metrics.queue.set(self._waiting)

    def _submit(self, gen, emit=None) -> asyncio.Future:
        """Start ``gen`` in the worker thread; the model is released when it ends, whoever stopped waiting."""
        lock = self._lock
        assert lock is not None  # held by the caller (acquire_or_gone)
        try:
            self._check_ready()  # the service may have begun stopping while this request waited
            assert self._executor is not None
            fut = asyncio.get_running_loop().run_in_executor(self._executor, self._work, gen, emit)
        except BaseException:
            lock.release()
            raise
        self._busy = True
        t0 = time.perf_counter()

        def done(_: asyncio.Future) -> None:
            self._busy = False
            self._avg_request_s = 0.8 * self._avg_request_s + 0.2 * (time.perf_counter() - t0)
            lock.release()

        fut.add_done_callback(done)
        return fut

    def _work(self, gen, emit) -> str | None:
        """The worker thread: run the generation, hand each piece to the event loop (or collect them)."""
        try:
            if emit is None:
                return "".join(gen)
            try:
                for piece in gen:
                    emit(piece)  # raises RuntimeError once the event loop is closed: generation stops
            except BaseException as exc:
                _emit_quietly(emit, _Failed(exc))
            else:
                _emit_quietly(emit, _END)
            return None
        finally:
            ttft = gen.t_first - gen.t_arrival if gen.t_first and gen.t_arrival else gen.ttft_s
            self.metrics.generation(gen.prompt_tokens, gen.completion_tokens, ttft, gen.decode_tps)

    async def handle(self, request: Any, endpoint: Endpoint):
        """Serve one request; every refusal is an OpenAI-style JSON error."""
        from starlette.responses import JSONResponse, StreamingResponse

        t_arrival = time.perf_counter()
        try:
            raw = await request.body()
            self._check_ready()  # READY: the prompt thread is there (stop() removes it after leaving READY)
            self._admit()
            self._preparing += 1
            try:
                req, gen = await asyncio.get_running_loop().run_in_executor(self._prep, self._read, raw, endpoint)
            finally:
                self._preparing -= 1
            gen.t_arrival = t_arrival
        except OpenAIError as exc:
            return self._refuse(endpoint, exc)
        if req.stream:
            enc = ChunkEncoder(endpoint, self.name)
            self.metrics.request(endpoint.value, "ok")
            return StreamingResponse(self._stream(gen, enc, req.include_usage), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            if not await acquire_or_gone(self, request):  # the client left while waiting: its place is free
                self.metrics.request(endpoint.value, "client_gone")
                return JSONResponse({}, status_code=499)
            fut = self._submit(gen)
        except OpenAIError as exc:
            return self._refuse(endpoint, exc)
        try:
            text = await self._until_done_or_gone(fut, request, gen.cancel)
        except Exception as exc:  # llama.cpp failed mid-generation
            return self._refuse(endpoint, OpenAIError(500, f"Generation failed: {exc}", type="server_error",
                                                      code="generation_failed"), cause=exc)
        self.metrics.request(endpoint.value, "ok")
        finish = gen.finish_reason if gen.finish_reason in ("stop", "length") else "stop"
        return JSONResponse(response(endpoint, self.name, text, finish, usage(gen.prompt_tokens, gen.completion_tokens)))

    def _refuse(self, endpoint: Endpoint, exc: OpenAIError, cause: BaseException | None = None):
        """Count the refusal, log it (one line for a client's mistake; the traceback of ``cause`` for
        the server's own failure) and answer it as an OpenAI-style JSON error."""
        self.metrics.request(endpoint.value, f"error_{exc.status}")
        return refusal(exc, f"POST {_PATHS[endpoint]}", cause)

    @staticmethod
    async def _until_done_or_gone(fut: asyncio.Future, request: Any, cancel: threading.Event) -> str:
        """Await the generation; a client that hangs up cancels it (checked every quarter second)."""
        while True:
            done, _ = await asyncio.wait({fut}, timeout=0.25)
            if done:
                return fut.result()
            if await request.is_disconnected():
                cancel.set()
                return await fut

    async def _stream(self, gen, enc: ChunkEncoder, include_usage: bool) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        put, call_soon = queue.put_nowait, loop.call_soon_threadsafe

        def emit(item: Any) -> None:  # runs in the worker thread
            call_soon(put, item)

        try:
            try:
                await self._acquire()
                self._submit(gen, emit)
            except OpenAIError as exc:
                log_refusal(exc, f"POST {_PATHS[enc.endpoint]} (streamed)")
                yield enc.error(exc)
                return
            role = enc.role()
            if role:
                yield role
            piece = enc.piece
            while True:
                item = await queue.get()
                if queue.qsize():  # tokens that arrived together leave in one write
                    items = [item]
                    while queue.qsize():
                        items.append(queue.get_nowait())
                else:
                    items = [item]
                out = []
                for item in items:
                    if item.__class__ is str:
                        out.append(piece(item))
                    elif item is _END:
                        reason = gen.finish_reason if gen.finish_reason in ("stop", "length") else "stop"
                        out.append(enc.finish(reason, usage(gen.prompt_tokens, gen.completion_tokens)
                                              if include_usage else None))
                        yield b"".join(out)
                        return
                    else:
                        err = OpenAIError(500, f"Generation failed: {item.exc}", type="server_error",
                                          code="generation_failed")
                        log_refusal(err, f"POST {_PATHS[enc.endpoint]} (streamed)", item.exc)
                        out.append(enc.error(err))
                        yield b"".join(out)
                        return
                yield b"".join(out)
        finally:
            # Normal end, or the client went away (Starlette cancels this generator): either way the
            # worker stops at the next token and its done-callback frees the model.
            gen.cancel.set()


def create_llm_router(service: LLMService):
    """The routes of the OpenAI endpoints of ``service``: chat and completions, embeddings refused."""
    from .._routes import Routes

    router = Routes(tag="llm")

    @router.post("/v1/chat/completions")
    async def chat_completions(request):
        """OpenAI's chat completions, streamed (stream: true) or whole."""
        return await service.handle(request, Endpoint.CHAT)

    @router.post("/v1/completions")
    async def completions(request):
        """OpenAI's legacy completions, streamed (stream: true) or whole."""
        return await service.handle(request, Endpoint.COMPLETION)

    @router.post("/v1/embeddings")
    async def embeddings(request):
        """Refused with a message that says where embeddings are served."""
        return refusal(embeddings_refused(service), "POST /v1/embeddings")

    return router


__all__ = ["LLMService", "RequestLimits", "ServiceState", "create_llm_router"]
