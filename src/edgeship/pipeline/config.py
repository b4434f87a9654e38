"""How a vision result becomes an LLM description: the prompt, the sampling, the prefix cache.

>>> cfg = DescribeConfig(prompt_template="Seen: {objects}. One sentence about the scene.", max_tokens=48)
>>> cfg.template().fixed
'Seen:'

The fields carry ``_config.cli`` metadata, so ``edgeship serve`` and ``edgeship describe`` get the
same flags (``--system-prompt``, ``--prompt-template``, ``--describe-max-tokens``, ...); a text
flag given as ``@FILE`` reads the file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from .._config import cli, non_negative_float, positive_float, positive_int, text_or_file
from ..errors import InputError

# SmolLM2-135M, greedy, on the shipped photos: this wording kept it to one sentence about what the
# classifier named (chelsea.png: "The photo of a cat with ..."); asked to "describe the scene" it
# tended to copy the percentages or invent a story.
DEFAULT_SYSTEM = "You describe photos in one short sentence."
DEFAULT_PROMPT = ("A vision model looked at a photo and says it most likely shows: {summary}. "
                  "Write one sentence describing the photo.")


@dataclass(frozen=True)
class DescribeConfig:
    """The describe prompt and how it is sampled.

    system_prompt / prompt_template: the system message (no placeholders) and the user message
      whose placeholders are filled from the vision result (pipeline/prompt.py lists them).
    max_tokens: the description's length limit; a request may ask for fewer, or more up to the
      server's ``--llm-max-tokens``.
    temperature: 0 (default) is greedy: the same picture gets the same description.
    repeat_penalty: above 1 keeps a small model from repeating a label over and over (SmolLM2-135M
      does at 1.0 on chelsea.png: "a cat that is a cat that is a cat").
    listed: classes (or detections) spelled out in the prompt.
    prefix_cache: evaluate the system text and the prompt's fixed words once and keep their KV
      cache, so a request evaluates only its own tail.
    """

    system_prompt: str = field(default=DEFAULT_SYSTEM, metadata=cli(
        "describe: the system message (no placeholders; @FILE reads a file)", type=text_or_file, metavar="TEXT"))
    prompt_template: str = field(default=DEFAULT_PROMPT, metadata=cli(
        "describe: the user message, with placeholders such as {summary}, {labels}, {objects}, {positions} "
        "filled from the vision result (@FILE reads a file)", type=text_or_file, metavar="TEXT"))
    max_tokens: int = field(default=64, metadata=cli(
        "describe: most tokens in a description", flag="--describe-max-tokens", type=positive_int))
    temperature: float = field(default=0.0, metadata=cli(
        "describe: sampling temperature (0: greedy, the same picture gets the same words)",
        flag="--describe-temperature", type=non_negative_float))
    repeat_penalty: float = field(default=1.15, metadata=cli(
        "describe: penalty on repeated tokens (1: none)", flag="--describe-repeat-penalty", type=positive_float))
    listed: int = field(default=3, metadata=cli(
        "describe: classes or detections spelled out in the prompt", flag="--describe-listed", type=positive_int))
    prefix_cache: bool = field(default=True, metadata=cli(
        "describe: evaluate the prompt's fixed head once and reuse its KV cache"))

    def __post_init__(self) -> None:
        if not isinstance(self.max_tokens, int) or isinstance(self.max_tokens, bool) or self.max_tokens < 1:
            raise InputError(f"describe max_tokens: expected a positive integer, got {self.max_tokens!r}")
        if not isinstance(self.listed, int) or not 1 <= self.listed <= 10:
            raise InputError(f"describe listed: expected an integer from 1 to 10, got {self.listed!r}")
        for name, lo, hi in (("temperature", 0.0, 2.0), ("repeat_penalty", 0.5, 2.0)):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or not lo <= v <= hi:
                raise InputError(f"describe {name}: expected a number within [{lo:g}, {hi:g}], got {v!r}")
        self.template()  # a bad template fails here, when the config is made

    def template(self):
        from .prompt import PromptTemplate

        return PromptTemplate(self.system_prompt, self.prompt_template)


__all__ = ["DEFAULT_PROMPT", "DEFAULT_SYSTEM", "DescribeConfig"]
