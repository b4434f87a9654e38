"""A terminal chat that streams the model's answer token by token, with the GGUF's own chat template.

>>> chat(engine, ChatConfig(), stdin=io.StringIO("Name the capital city of Germany.\\n"), stdout=sys.stdout)
The capital city of Germany is Berlin.

One line of input is one user message; ``/reset`` forgets the conversation, ``/exit`` or end of
input quits. When the conversation outgrows the context, the oldest turns are dropped (the system
message stays). Prompts (``you>``) are shown only when input comes from a terminal, so piped
input gives only the answers.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TextIO

from .._config import cli, non_negative_float, positive_int
from ..errors import InputError
from .errors import ContextLengthError


@dataclass(frozen=True)
class ChatConfig:
    system: str | None = field(default=None, metadata=cli(  # None: the template's default, if it has one
        "system message (default: the chat template's own, if any)"))
    max_tokens: int = field(default=512, metadata=cli("longest answer in tokens", type=positive_int))
    temperature: float = field(default=0.7, metadata=cli("sampling temperature; 0 for greedy",
                                                         type=non_negative_float))
    top_p: float = 0.95
    seed: int | None = field(default=None, metadata=cli("sampling seed, for repeatable answers", type=int))

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise InputError(f"max_tokens: expected a positive integer, got {self.max_tokens}")


def _fit(engine, messages: list[dict], max_tokens: int):
    """Tokenise the conversation, dropping the oldest user/assistant pairs until it fits the context."""
    from .engine import check_fits

    head = [m for m in messages[:1] if m["role"] == "system"]
    turns = messages[len(head):]
    while True:
        prompt = engine.chat_prompt(head + turns)
        room = min(max_tokens, max(engine.n_ctx - len(prompt), 0))
        try:
            check_fits(len(prompt), room or max_tokens, engine.n_ctx)
            return prompt, room
        except ContextLengthError:
            if len(turns) <= 1:
                raise
            turns = turns[2:] if len(turns) > 2 else turns[1:]


def chat(engine, config: ChatConfig, stdin: TextIO | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    """Run the chat loop until ``/exit`` or end of input. Returns the number of answers given."""
    from .engine import SamplingConfig

    # The process's streams as they are now, not as they were when this module was imported
    # (a redirected or replaced sys.stdin would otherwise be ignored).
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr

    interactive = stdin.isatty()
    messages: list[dict] = [{"role": "system", "content": config.system}] if config.system else []
    answers = 0
    while True:
        if interactive:
            stdout.write("you> ")
            stdout.flush()
        line = stdin.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text == "/exit":
            break
        if text == "/reset":
            messages = messages[:1] if config.system else []
            stderr.write("(conversation cleared)\n")
            continue
        messages.append({"role": "user", "content": text})
        try:
            prompt, room = _fit(engine, messages, config.max_tokens)
        except ContextLengthError as exc:
            messages.pop()
            stderr.write(f"error: {exc}\n")
            continue
        sampling = SamplingConfig(max_tokens=room, temperature=config.temperature, top_p=config.top_p,
                                  seed=config.seed)
        if interactive:
            stdout.write("assistant> ")
        parts: list[str] = []
        for piece in engine.generate(prompt, sampling):
            if not parts:
                piece = piece.lstrip()
            if piece:
                parts.append(piece)
                stdout.write(piece)
                stdout.flush()
        stdout.write("\n")
        stdout.flush()
        messages.append({"role": "assistant", "content": "".join(parts)})
        answers += 1
    return answers


def run_cli(args) -> int:
    """``edgeship llm chat MODEL``."""
    from .._config import config_from_args
    from .engine import Engine, LoadConfig, llama_cpp_module
    from .model_file import resolve_gguf

    llama_cpp_module()  # first: without the llm extra, say which one to install
    config = config_from_args(ChatConfig, args)
    path, name = resolve_gguf(args.model)
    with Engine.load(path, config_from_args(LoadConfig, args), name=name) as engine:
        if sys.stdin.isatty():
            info = engine.info
            sys.stderr.write(f"{info.name} ({info.quantization}, {engine.load_s * 1e3:.0f} ms to load, "
                             f"{info.chat_template} chat template); /reset to forget, /exit to quit\n")
        chat(engine, config)
    return 0


__all__ = ["ChatConfig", "chat"]
