"""Vision + LLM on one device: edgeship's describe against a re-creation of the article's design.

    python bench/pipeline.py [--bundle DIR] [--llm GGUF] [--threads 2] [--images chelsea,coffee,astronaut,motorcycle_left]
        [--repeat 3] [--rate 10] [--duration 20] [--modes priority,pause,off] [--json bench/results/pipeline.json]

Three parts, in one run, same models (EfficientNet-Lite0 bundle, SmolLM2-135M-Instruct Q4_1), the
same prompt (edgeship's describe prompt, rendered from the same top classes), greedy sampling and
the same threads for the vision model and the LLM in both designs:

1. prefix cache (in this process): the time from the LLM's start on a describe to its first token,
   with the prompt's head put back from the cache against evaluating the whole prompt, each right
   after an unrelated request replaced the context (as on a server that also answers chats).
2. side by side: ``edgeship serve BUNDLE --llm GGUF`` answering ``POST /v1/pipelines/describe``
   (streamed) against the article's design: bench/article_pipeline.py (vision in its own process)
   calling llama-cpp-python's OpenAI server (``python -m llama_cpp.server``, started here) once
   per picture: blocking, as written, and streamed. Time to the vision result, to the first
   description token, total, from the picture's arrival; peak RSS (VmHWM) of every process of each
   design (edgeship: its server; article: its application and its LLM server). Each design
   describes the pictures one after another, the designs' order rotating from repeat to repeat;
   llama-cpp-python reuses a prompt's common head with the request before on both sides, so
   what the prefix cache adds shows in part 1, not here.
3. sharing the cores: vision requests at a steady rate (``--rate``, default 10/s) for
   ``--duration`` seconds, alone and while the LLM generates without a break (back-to-back
   streamed chats), and the LLM's generation speed alone and shared; for edgeship under each
   ``--llm-sharing`` mode (a server per mode) and for the article's design (its vision loop in its
   own process, timed there, while its LLM server generates).

Goals (issue 17): first description token 2x sooner than the article's design, total 1.3x shorter,
combined RSS lower; shared vision p99 at most 1.25x the solo p99, shared LLM speed at least 70% of
solo. The machine's load average is recorded at the start and the end: on a shared machine the
figures are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
STORY = [{"role": "user", "content": "Write a very long story about a lighthouse keeper and a storm."}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss(pid: int) -> int | None:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_http(proc: subprocess.Popen, url: str, what: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    stop(proc)
    raise RuntimeError(f"{what} not ready after {timeout:.0f} s")


def start_edgeship(a, sharing: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "edgeship.cli", "serve", a.bundle, "--llm", a.llm, "--threads", str(a.threads),
           "--llm-ctx", str(a.ctx), "--llm-sharing", sharing, "--describe-max-tokens", str(a.max_tokens),
           "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_http(proc, url + "/health/ready", "edgeship serve")
    return proc, url


def start_llama_server(a) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", a.llm, "--n_threads", str(a.threads),
           "--n_threads_batch", str(a.threads), "--n_ctx", str(a.ctx), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    wait_http(proc, url + "/v1/models", "llama_cpp.server")
    return proc, url


class ArticleApp:
    """bench/article_pipeline.py in its own process, one JSON command and answer a line."""

    def __init__(self, a, llm_url: str, config):
        cmd = [sys.executable, str(HERE / "article_pipeline.py"), a.bundle, "--llm-url", llm_url,
               "--threads", str(a.threads), "--system", config.system_prompt, "--template", config.prompt_template,
               "--listed", str(config.listed), "--max-tokens", str(a.max_tokens),
               "--repeat-penalty", str(config.repeat_penalty)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert json.loads(self.proc.stdout.readline()).get("ready")

    def call(self, **cmd) -> dict:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        stop(self.proc)


def describe_edgeship(client: httpx.Client, url: str, path: Path) -> dict:
    """One streamed describe; times from the request's start, as the client sees them."""
    data = path.read_bytes()
    t0 = time.perf_counter()
    t_vision = t_first = 0.0
    kind, done, vision = None, None, None
    with client.stream("POST", url + "/v1/pipelines/describe", content=data) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                now = time.perf_counter()
                if kind == "vision":
                    t_vision, vision = now, json.loads(line[6:])
                elif kind == "token":
                    t_first = t_first or now
                elif kind == "done":
                    done = json.loads(line[6:])
    t_end = time.perf_counter()
    return {"vision_ms": (t_vision - t0) * 1e3, "first_token_ms": (t_first - t0) * 1e3, "total_ms": (t_end - t0) * 1e3,
            "description": done["description"], "top1": vision["classes"][0]["label"], "usage": done.get("usage"),
            "server_timing_ms": done["timing_ms"]}


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def pct(xs, q):
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))]


# --- part 1: the prefix cache --------------------------------------------------------------------------


def part_prefix(a, config, photos) -> dict:
    from edgeship.llm.engine import SamplingConfig
    from edgeship.pipeline import Pipeline

    pipe = Pipeline.load(a.bundle, a.llm, config, threads=a.threads, n_ctx=a.ctx)
    cold = Pipeline(pipe.engine, replace(config, prefix_cache=False), tasks=(pipe.model.task,))
    other = pipe.engine.chat_prompt([{"role": "user", "content": "Name three rivers of Europe."}])
    seen = {}
    for name in a.images:
        pred = pipe.model.predict(photos[name], top_k=5)
        seen[name] = (pred.output, (pred.meta.width, pred.meta.height))
    rows = {"cached": [], "whole": []}
    evaluated = {"cached": [], "whole": []}
    for i in range(a.repeat):
        for name in a.images:
            for variant in (("cached", "whole") if i % 2 == 0 else ("whole", "cached")):
                "".join(pipe.engine.generate(other, SamplingConfig(max_tokens=1, temperature=0)))  # context replaced
                p = pipe if variant == "cached" else cold
                gen = p.generation(pipe.model.task, seen[name][0], seen[name][1], max_tokens=1)
                "".join(gen)
                rows[variant].append(gen.prompt_ms)
                evaluated[variant].append(gen.evaluated_tokens)
    result = {"head_tokens": len(pipe.head_tokens), "warm_ms": pipe.prefix.warm_ms, "state_bytes": pipe.prefix.bytes,
              "prompt_ms": rows, "evaluated_tokens": evaluated,
              "median_ms": {k: med(v) for k, v in rows.items()},
              "median_evaluated": {k: med(v) for k, v in evaluated.items()}}
    result["speedup"] = result["median_ms"]["whole"] / result["median_ms"]["cached"]
    pipe.close()
    return result


# --- part 2: side by side ---------------------------------------------------------------------------------


def part_side_by_side(a, config, photos) -> dict:
    ed, ed_url = start_edgeship(a, "priority")  # the default
    ll, ll_url = start_llama_server(a)
    app = ArticleApp(a, ll_url, config)
    rows = {"edgeship": [], "article": [], "article_streamed": []}
    try:
        with httpx.Client(timeout=600) as client:
            first = photos[a.images[-1]]
            describe_edgeship(client, ed_url, first)  # untimed: first-call costs on both sides (the last
            # picture, so that no timed request follows the very same prompt)
            app.call(op="describe", image=str(first), stream=False)
            designs = list(rows)
            for i in range(a.repeat):
                # Each design describes every picture in turn: its LLM's previous request is always
                # another picture's describe (never the very same prompt, which a server answers
                # from its cache), as for a camera sending one picture after another.
                for d in designs[i % 3:] + designs[:i % 3]:
                    for name in a.images:
                        if d == "edgeship":
                            r = describe_edgeship(client, ed_url, photos[name])
                        else:
                            r = app.call(op="describe", image=str(photos[name]), stream=d == "article_streamed")
                        rows[d].append({"image": name, **r})
                print(f"  repeat {i + 1}/{a.repeat}: " + ", ".join(
                    f"{d} {med([x['first_token_ms'] for x in rows[d]]):.0f}/{med([x['total_ms'] for x in rows[d]]):.0f} ms"
                    for d in designs), flush=True)
        app_rss = app.call(op="rss")["peak_rss_bytes"]
        rss = {"edgeship": peak_rss(ed.pid), "article_app": app_rss, "llama_server": peak_rss(ll.pid)}
    finally:
        app.close()
        stop(ed)
        stop(ll)
    summary = {d: {k: med([x[k] for x in v]) for k in ("vision_ms", "first_token_ms", "total_ms")}
               for d, v in rows.items()}
    by_image = {(x["image"], k): x["description"] for k in ("edgeship", "article") for x in rows[k]}
    same_text = sum(by_image[(n, "edgeship")] == by_image[(n, "article")] for n in a.images) / len(a.images)
    rss["article_total"] = (rss["article_app"] or 0) + (rss["llama_server"] or 0)
    e, art, st = summary["edgeship"], summary["article"], summary["article_streamed"]
    ratios = {
        "first_token_vs_article": art["first_token_ms"] / e["first_token_ms"],
        "first_token_vs_article_streamed": st["first_token_ms"] / e["first_token_ms"],
        "total_vs_article": art["total_ms"] / e["total_ms"],
        "total_vs_article_streamed": st["total_ms"] / e["total_ms"],
        "rss_vs_article": rss["article_total"] / rss["edgeship"] if rss["edgeship"] else None,
    }
    goals = {"first token >= 2x sooner": ratios["first_token_vs_article"] >= 2.0,
             "total >= 1.3x shorter": ratios["total_vs_article"] >= 1.3,
             "combined RSS lower": bool(rss["edgeship"] and rss["edgeship"] < rss["article_total"])}
    return {"rows": rows, "summary": summary, "rss_bytes": rss, "ratios": ratios, "goals": goals,
            "same_description_share": same_text}


# --- part 3: sharing the cores ----------------------------------------------------------------------------


async def _steady(url: str, data: bytes, rate: float, duration: float, errors: list | None = None) -> list[float]:
    """Latencies (ms) of the requests answered 200; the others' statuses go to ``errors``."""
    lat: list[float] = []
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200)) as c:
        loop = asyncio.get_running_loop()

        async def one():
            t = time.perf_counter()
            try:
                r = await c.post(url, content=data)
                status = r.status_code
            except httpx.HTTPError as exc:
                status = type(exc).__name__
            if status == 200:
                lat.append((time.perf_counter() - t) * 1e3)
            elif errors is not None:
                errors.append(status)

        t0, tasks = loop.time(), []
        for i in range(int(rate * duration)):
            await asyncio.sleep(max(0.0, t0 + i / rate - loop.time()))
            tasks.append(asyncio.ensure_future(one()))
        await asyncio.gather(*tasks)
    return lat


def vision_at_rate(url: str, data: bytes, rate: float, duration: float, errors: list | None = None) -> list[float]:
    return asyncio.run(_steady(url, data, rate, duration, errors))


def llm_continuous(url: str, stop_flag: threading.Event, max_tokens: int, out: dict) -> None:
    """Back-to-back streamed chats until ``stop_flag``; tokens after the first of each, over their time."""
    tokens, span = 0, 0.0
    body = {"messages": STORY, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    with httpx.Client(timeout=600) as c:
        while not stop_flag.is_set():
            t_first = t_last = None
            n = 0
            with c.stream("POST", url + "/v1/chat/completions", json=body) as r:
                r.raise_for_status()
                for line in r.iter_lines():
                    if stop_flag.is_set():
                        break
                    if line.startswith("data: {") and '"content"' in line:
                        if json.loads(line[6:])["choices"][0]["delta"].get("content"):
                            t_last = time.perf_counter()
                            t_first = t_first or t_last
                            n += 1
            if n > 1:
                tokens += n - 1
                span += t_last - t_first
    out["tokens"], out["seconds"] = tokens, span
    out["tok_s"] = tokens / span if span else float("nan")


def _with_llm(llm_url: str, max_tokens: int, measure) -> tuple[object, dict]:
    """Run ``measure()`` while the LLM generates without a break; returns its result and the LLM's speed."""
    flag, llm = threading.Event(), {}
    t = threading.Thread(target=llm_continuous, args=(llm_url, flag, max_tokens, llm))
    t.start()
    time.sleep(1.0)  # the generation is under way
    try:
        result = measure()
    finally:
        flag.set()
        t.join()
    return result, llm


def _llm_alone(llm_url: str, max_tokens: int, duration: float) -> dict:
    flag, llm = threading.Event(), {}
    timer = threading.Timer(duration, flag.set)
    timer.start()
    llm_continuous(llm_url, flag, max_tokens, llm)
    return llm


def _sharing_row(alone: list[float], shared: list[float], solo: dict, both: dict) -> dict:
    row = {"vision_alone": {"n": len(alone), "p50_ms": pct(alone, 50), "p99_ms": pct(alone, 99), "max_ms": max(alone)},
           "vision_shared": {"n": len(shared), "p50_ms": pct(shared, 50), "p99_ms": pct(shared, 99),
                             "max_ms": max(shared)},
           "llm_alone": solo, "llm_shared": both}
    row["p99_ratio"] = row["vision_shared"]["p99_ms"] / row["vision_alone"]["p99_ms"]
    row["tok_s_ratio"] = both["tok_s"] / solo["tok_s"] if solo.get("tok_s") else float("nan")
    row["goals"] = {"shared p99 <= 1.25x solo": row["p99_ratio"] <= 1.25,
                    "shared tok/s >= 70% of solo": row["tok_s_ratio"] >= 0.70}
    return row


def part_sharing(a, config, photos) -> dict:
    data = photos[a.images[0]].read_bytes()
    out = {}
    for mode in a.modes:
        proc, url = start_edgeship(a, mode)
        try:
            predict = url + "/v1/models/" + httpx.get(url + "/v1/models").json()["data"][0]["id"] + "/predict"
            vision_at_rate(predict, data, a.rate, 1.0)  # untimed warm-up
            alone = vision_at_rate(predict, data, a.rate, a.duration)
            solo = _llm_alone(url, 256, a.duration)
            shared, both = _with_llm(url, 256, lambda predict=predict: vision_at_rate(predict, data, a.rate, a.duration))
        finally:
            stop(proc)
        key = f"edgeship ({mode})"
        key = key if key not in out else f"{key} #{sum(k.startswith(key) for k in out) + 1}"  # a mode given twice
        out[key] = row = _sharing_row(alone, shared, solo, both)
        print(f"  edgeship --llm-sharing {mode}: vision p99 {row['vision_alone']['p99_ms']:.1f} -> "
              f"{row['vision_shared']['p99_ms']:.1f} ms, LLM {solo['tok_s']:.1f} -> {both['tok_s']:.1f} tok/s", flush=True)
    if not a.skip_article:
        ll, ll_url = start_llama_server(a)
        app = ArticleApp(a, ll_url, config)
        try:
            path = str(photos[a.images[0]])
            app.call(op="rate", image=path, rate=a.rate, duration=1.0)
            alone = app.call(op="rate", image=path, rate=a.rate, duration=a.duration)["latencies_ms"]
            solo = _llm_alone(ll_url, 256, a.duration)
            shared, both = _with_llm(ll_url, 256, lambda: app.call(op="rate", image=path, rate=a.rate,
                                                                     duration=a.duration)["latencies_ms"])
        finally:
            app.close()
            stop(ll)
        out["article (in-process vision)"] = row = _sharing_row(alone, shared, solo, both)
        print(f"  article: vision p99 {row['vision_alone']['p99_ms']:.1f} -> {row['vision_shared']['p99_ms']:.1f} ms, "
              f"LLM {solo['tok_s']:.1f} -> {both['tok_s']:.1f} tok/s", flush=True)
    return out


# --- report -----------------------------------------------------------------------------------------------


def report(result: dict) -> str:
    lines = [f"machine: {result['environment'].get('cpu')}, {result['environment'].get('cores_logical')} cores; "
             f"load average {result['load_before']} at the start, {result['load_after']} at the end"]
    p = result.get("prefix")
    if p:
        lines += ["", f"1. prefix cache: head {p['head_tokens']} tokens ({p['state_bytes'] >> 10} KB of KV state, "
                      f"evaluated once in {p['warm_ms']:.0f} ms); time from the LLM's start to the first token, "
                      "after another request replaced the context (median):",
                  "| prompt | evaluated tokens | ms |", "|---|---|---|",
                  f"| head from the cache | {p['median_evaluated']['cached']:.0f} | {p['median_ms']['cached']:.1f} |",
                  f"| whole prompt | {p['median_evaluated']['whole']:.0f} | {p['median_ms']['whole']:.1f} |",
                  f"speedup {p['speedup']:.2f}x"]
    s = result.get("side_by_side")
    if s:
        lines += ["", "2. side by side (median ms from the picture's arrival; peak RSS of every process):",
                  "| design | vision | first description token | total | peak RSS MB |", "|---|---|---|---|---|"]
        rss = s["rss_bytes"]
        mb = {"edgeship": rss["edgeship"], "article": rss["article_total"], "article_streamed": rss["article_total"]}
        names = {"edgeship": "edgeship serve, describe streamed", "article": "article: app + llama_cpp.server, blocking",
                 "article_streamed": "article, its LLM call streamed"}
        for d, v in s["summary"].items():
            lines.append(f"| {names[d]} | {v['vision_ms']:.1f} | {v['first_token_ms']:.0f} | {v['total_ms']:.0f} | "
                         f"{(mb[d] or 0) / 2**20:.0f} |")
        r = s["ratios"]
        lines += [f"first token: {r['first_token_vs_article']:.2f}x sooner than the article as written "
                  f"({r['first_token_vs_article_streamed']:.2f}x than its streamed form); total "
                  f"{r['total_vs_article']:.2f}x shorter ({r['total_vs_article_streamed']:.2f}x); RSS "
                  f"{(rss['edgeship'] or 0) / 2**20:.0f} MB against {rss['article_total'] / 2**20:.0f} MB "
                  f"(app {(rss['article_app'] or 0) / 2**20:.0f} + LLM server {(rss['llama_server'] or 0) / 2**20:.0f})",
                  f"same description in both designs: {s['same_description_share']:.0%} of pictures",
                  "goals: " + ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in s["goals"].items())]
    c = result.get("sharing")
    if c:
        lines += ["", f"3. sharing the cores: vision at {result['config']['rate']:g}/s for {result['config']['duration']:g} s, "
                      "alone and while the LLM generates without a break:",
                  "| design | vision p50 / p99 alone ms | shared ms | p99 ratio | LLM tok/s alone | shared | ratio |",
                  "|---|---|---|---|---|---|---|"]
        for d, row in c.items():
            va, vs = row["vision_alone"], row["vision_shared"]
            lines.append(f"| {d} | {va['p50_ms']:.1f} / {va['p99_ms']:.1f} | {vs['p50_ms']:.1f} / {vs['p99_ms']:.1f} | "
                         f"{row['p99_ratio']:.2f} | {row['llm_alone']['tok_s']:.1f} | {row['llm_shared']['tok_s']:.1f} | "
                         f"{row['tok_s_ratio']:.0%} |")
        lines.append("goals (p99 <= 1.25x, tok/s >= 70%): " + "; ".join(
            f"{d}: " + ", ".join('met' if v else 'MISSED' for v in row["goals"].values()) for d, row in c.items()))
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", help="EfficientNet-Lite0 bundle (default: exported to /tmp/edgeship-bench-lite0)")
    p.add_argument("--llm", help="GGUF (default: the packaged SmolLM2-135M-Instruct)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--ctx", type=int, default=2048)
    # PNGs: a JPEG large enough is decoded at reduced scale by edgeship and in full by the article's
    # code, and the scores (hence the prompts) would differ slightly.
    p.add_argument("--images", default="chelsea,coffee,astronaut,motorcycle_left")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--rate", type=float, default=10.0)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--modes", default="priority,pause,off")
    p.add_argument("--parts", default="prefix,side,sharing")
    p.add_argument("--skip-article", action="store_true", help="part 3 without the article's design")
    p.add_argument("--json", default=str(HERE / "results" / "pipeline.json"))
    a = p.parse_args()
    a.images = [s for s in a.images.split(",") if s]
    a.modes = [s for s in a.modes.split(",") if s]
    parts = set(a.parts.split(","))

    from edgeship.bench.env import environment
    from edgeship.photos import photos as find_photos
    from edgeship.pipeline import DescribeConfig
    from edgeship.util import write_json

    photos = find_photos()
    missing = [n for n in a.images if n not in photos]
    if missing:
        p.error(f"photos not found: {', '.join(missing)} (found: {', '.join(sorted(photos))})")
    if a.llm is None:
        from edgeship.llm.default import default_llm_path

        a.llm = str(default_llm_path())
    if a.bundle is None:
        a.bundle = "/tmp/edgeship-bench-lite0"
        if not Path(a.bundle, "edgeship.json").is_file():
            from edgeship.optimize.export import ExportSpec, export

            export("efficientnet-lite0", a.bundle, ExportSpec(dynamic_batch=True), overwrite=True)
    config = DescribeConfig(max_tokens=a.max_tokens)
    result = {"config": {k: v for k, v in vars(a).items()}, "environment": environment(a.threads),
              "load_before": [round(x, 2) for x in os.getloadavg()],
              "describe": {"system_prompt": config.system_prompt, "prompt_template": config.prompt_template,
                           "repeat_penalty": config.repeat_penalty, "listed": config.listed},
              "llm_server_for_the_article": "llama-cpp-python's python -m llama_cpp.server"}
    if "prefix" in parts:
        print("1. prefix cache ...", flush=True)
        result["prefix"] = part_prefix(a, config, photos)
    if "side" in parts:
        print("2. side by side ...", flush=True)
        result["side_by_side"] = part_side_by_side(a, config, photos)
    if "sharing" in parts:
        print("3. sharing the cores ...", flush=True)
        result["sharing"] = part_sharing(a, config, photos)
    result["load_after"] = [round(x, 2) for x in os.getloadavg()]
    write_json(a.json, result)  # before printing: a formatting slip cannot lose the run
    print(report(result))
    print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
