"""The Pipeline: a vision result in, an LLM description out, streamed, with the prompt's head cached.

>>> pipe = Pipeline.load("effnet-lite0/", default_llm_path(), DescribeConfig(), threads=2)
>>> for event in pipe.describe("chelsea.png"):
...     print(event.kind, event.data)
vision {'model': 'efficientnet-lite0', 'task': 'classify', 'classes': [...], 'timing_ms': {...}}
token {'text': 'The'}
...
done {'description': 'The photo of a cat ...', 'finish_reason': 'stop', 'timing_ms': {...}, ...}

``edgeship describe`` runs it like this, in one process. The server (``POST
/v1/pipelines/describe``, serve/describe.py) uses the same object for the part after vision: it
runs the vision model through its batching worker, then ``pipeline.generation(...)`` on the LLM's
thread, and sends the same events as server-sent events.

The prompt is the model's chat template around the system text and the filled-in prompt. The
template is rendered once with markers in place of the two texts, so the head (chat template,
system text, the prompt's fixed words) is tokenised once and its KV cache kept (llm/prefix.py);
a request tokenises only its tail. The texts themselves are tokenised with special tokens off,
so a label or a system text that spells ``<|im_end|>`` stays text.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Sequence

from ..bundle import Task
from ..errors import InputError
from .config import DescribeConfig

_SYSTEM_MARK = "\x00edgeship-system\x00"
_PROMPT_MARK = "\x00edgeship-prompt\x00"
# Room the tail of a request needs besides the head and max_tokens, checked at start: the filled-in
# placeholders of at most MAX_LISTED classes or detections (about 15 tokens each) and the template.
TAIL_ROOM = 192


@dataclass(frozen=True)
class Event:
    """One step of a describe: ``vision`` (the vision answer), ``token`` (text), ``done`` or ``error``."""

    kind: str
    data: dict[str, Any]

    def sse(self) -> bytes:
        """The event as a server-sent event: ``event: KIND`` and one line of JSON."""
        import json

        return b"event: " + self.kind.encode() + b"\ndata: " + json.dumps(
            self.data, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


@dataclass
class Clock:
    """When each step of one describe happened (perf_counter seconds)."""

    arrival: float = field(default_factory=time.perf_counter)
    vision: float = 0.0  # the vision answer is ready
    acquired: float = 0.0  # the LLM began on this request (after waiting for it)
    end: float = 0.0

    def timing_ms(self, gen=None) -> dict[str, float]:
        """vision, queue (waiting for the LLM), prompt (restore + tail evaluation), first_token (from arrival),
        generation (first token to last) and total, in ms; steps that did not happen are left out."""
        ms = {"vision": (self.vision - self.arrival) * 1e3}
        if gen is not None and gen.t_begin:
            ms["queue"] = max(0.0, (gen.t_begin - self.vision) * 1e3)
            if gen.t_first:
                ms["prompt"] = gen.prompt_ms
                ms["first_token"] = (gen.t_first - self.arrival) * 1e3
                ms["generation"] = (gen.t_end - gen.t_first) * 1e3
        ms["total"] = ((self.end or time.perf_counter()) - self.arrival) * 1e3
        return {k: round(v, 3) for k, v in ms.items()}


def done_event(clock: Clock, gen=None, text: str | None = None, degraded: dict | None = None) -> Event:
    """The last event: the whole description (None when degraded, with the reason), timings, token counts."""
    data: dict[str, Any] = {"description": text, "degraded": degraded}
    if gen is not None:
        data["prompt"] = getattr(gen, "prompt_text", None)
        data["finish_reason"] = gen.finish_reason if gen.finish_reason in ("stop", "length") else "stop"
        data["usage"] = {"prompt_tokens": gen.prompt_tokens, "completion_tokens": gen.completion_tokens,
                         "reused_prompt_tokens": gen.reused_tokens, "evaluated_prompt_tokens": gen.evaluated_tokens}
        tps = gen.decode_tps
        data["tokens_per_s"] = round(tps, 2) if tps == tps else None
    data["timing_ms"] = clock.timing_ms(gen)
    return Event("done", data)


class Pipeline:
    """Prompts from vision results for one LLM engine, with the head cached; see the module docstring."""

    def __init__(self, engine, config: DescribeConfig | None = None, tasks: Sequence[Task] = (Task.CLASSIFY,),
                 model=None):
        self.engine = engine
        self.config = config or DescribeConfig()
        self.template = self.config.template()
        for task in tasks:
            self.template.check(task)  # an unknown placeholder for a served task fails at start
        self.model = model  # the vision Model, for describe() in one process
        rendered = engine.chat_prompt([{"role": "system", "content": _SYSTEM_MARK},
                                       {"role": "user", "content": _PROMPT_MARK}]).text
        if rendered.count(_SYSTEM_MARK) != 1 or rendered.count(_PROMPT_MARK) != 1 \
                or rendered.index(_SYSTEM_MARK) > rendered.index(_PROMPT_MARK):
            raise InputError(f"{engine.name}: its chat template does not place a system message before the "
                             "user's; describe needs one that does")
        before, rest = rendered.split(_SYSTEM_MARK)
        between, after = rest.split(_PROMPT_MARK)
        self.head_tokens = (self._special(before) + self._plain(self.config.system_prompt) + self._special(between)
                            + self._plain(self.template.fixed))
        self._end_tokens = self._special(after)
        need = len(self.head_tokens) + TAIL_ROOM + self.config.max_tokens
        if need > engine.n_ctx:
            raise InputError(f"describe: the prompt head is {len(self.head_tokens)} tokens; with room for a request "
                             f"({TAIL_ROOM}) and {self.config.max_tokens} tokens of description it needs a context of "
                             f"{need}, and the LLM's is {engine.n_ctx}; raise the context (--llm-ctx) or shorten "
                             "the system prompt")
        self.prefix = None
        if self.config.prefix_cache:
            from ..llm.prefix import PrefixCache

            self.prefix = PrefixCache(engine, self.head_tokens)

    def _special(self, text: str) -> list[int]:
        return self.engine.tokenize(text, add_bos=False, special=True).tokens if text else []

    def _plain(self, text: str) -> list[int]:
        return self.engine.tokenize(text, add_bos=False, special=False).tokens if text else []

    # -- on the LLM's thread -----------------------------------------------------------------------

    def warm(self) -> None:
        """Evaluate the head once (on the model's thread), so the first request finds it cached."""
        if self.prefix is not None:
            self.prefix.warm()

    # -- prompts -----------------------------------------------------------------------------------

    def prompt(self, task: Task, output: Mapping[str, Any], size: tuple[int, int] | None = None,
               model: str = "") -> str:
        """The user message for this vision result (what the article's design sends to its LLM server)."""
        return self.template.render(task, output, size, self.config.listed, model)

    def messages(self, task: Task, output: Mapping[str, Any], size: tuple[int, int] | None = None,
                 model: str = "") -> list[dict[str, str]]:
        return [{"role": "system", "content": self.config.system_prompt},
                {"role": "user", "content": self.prompt(task, output, size, model)}]

    def generation(self, task: Task, output: Mapping[str, Any], size: tuple[int, int] | None = None, *,
                   model: str = "", max_tokens: int | None = None, cancel: threading.Event | None = None):
        """A PrefixedGeneration of the description; iterate it on the model's thread."""
        from ..llm.engine import SamplingConfig, check_fits
        from ..llm.prefix import PrefixedGeneration

        variable = self.template.render_variable(task, output, size, self.config.listed, model)
        tail = self._plain(variable)
        tokens = self.head_tokens + tail + self._end_tokens
        want = max_tokens or self.config.max_tokens
        check_fits(len(tokens), None, self.engine.n_ctx)  # the prompt alone; the answer gets what is left
        c = self.config
        sampling = SamplingConfig(max_tokens=min(want, self.engine.n_ctx - len(tokens)), temperature=c.temperature,
                                  repeat_penalty=c.repeat_penalty, seed=0 if c.temperature == 0 else None)
        gen = PrefixedGeneration(self.engine, tokens, sampling, cancel or threading.Event(), self.prefix)
        gen.prompt_text = self.template.fixed + variable  # the user message, for the done event
        return gen

    # -- in one process (the CLI, the demo) --------------------------------------------------------

    @classmethod
    def load(cls, bundle: str | os.PathLike, llm: str | os.PathLike, config: DescribeConfig | None = None,
             threads: int | None = None, n_ctx: int = 2048) -> "Pipeline":
        """The vision bundle and the GGUF (or LLM bundle) loaded here, both with ``threads``; head warm."""
        from ..llm.engine import Engine, LoadConfig
        from ..llm.model_file import resolve_gguf
        from ..runtime import Model, RuntimeConfig

        model = Model.load(bundle, RuntimeConfig(intra_op_threads=threads))
        path, name = resolve_gguf(llm)
        engine = Engine.load(path, LoadConfig(n_ctx=n_ctx, n_threads=threads), name=name)
        try:
            pipe = cls(engine, config, tasks=(model.task,), model=model)
            pipe.warm()
        except BaseException:
            engine.close()
            model.close()
            raise
        return pipe

    def describe(self, image: Any, max_tokens: int | None = None) -> Iterator[Event]:
        """Vision, then the description token by token, then the timings: ``vision``, ``token``..., ``done``."""
        if self.model is None:
            raise InputError("this Pipeline has no vision model; make it with Pipeline.load, or run vision yourself "
                             "and iterate pipeline.generation(...)")
        clock = Clock()
        # Every detection counts in the prompt ({count}, {objects}); of classes, at least those it lists.
        top_k = None if self.model.task is Task.DETECT else max(
            self.config.listed, self.model.bundle.manifest.postprocessing.top_k)
        pred = self.model.predict(image, top_k=top_k)
        clock.vision = time.perf_counter()
        size = (pred.meta.width, pred.meta.height) if pred.meta is not None else None
        yield Event("vision", vision_answer(self.model, self.model.name, pred.output, pred.timing_ms))
        gen = self.generation(self.model.task, pred.output, size, model=self.model.name, max_tokens=max_tokens)
        parts = []
        for piece in gen:
            parts.append(piece)
            yield Event("token", {"text": piece})
        clock.end = time.perf_counter()
        yield done_event(clock, gen, "".join(parts).strip())

    def close(self) -> None:
        self.engine.close()
        if self.model is not None:
            self.model.close()


def vision_answer(model, name: str, output: Mapping[str, Any], timing_ms: Mapping[str, float]) -> dict[str, Any]:
    """The vision event's data: what ``POST /v1/models/NAME/predict`` answers."""
    return {"model": name, "version": model.version, "task": model.task.value, **output,
            "timing_ms": {k: round(v, 3) for k, v in timing_ms.items() if isinstance(v, (int, float))}}


__all__ = ["Clock", "Event", "Pipeline", "done_event", "vision_answer"]
