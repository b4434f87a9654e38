"""Generation-phase A/B on edgeship's describe prompts (SmolLM2-135M-Instruct Q4_1, greedy, rp 1.15, 48 tokens).

python bench/llm_paths.py --rounds 5 --json bench/results/llm_paths.json

Every run is timed with instance-level wrappers on Llama.eval and Llama.sample (what Llama.generate calls):
  prompt_ms = call start -> end of the first eval (the prompt's tail);
  gen_ms    = end of that first eval -> the call's end (all tokens sampled, evaluated, detokenised, yielded);
  eval_ms / sample_ms = time inside eval / sample during the generation phase; py_ms = gen_ms - eval - sample.
Configurations are interleaved: each round runs every configuration (order rotated from round to round) on
the 4 photos, one photo after the other (so the context's previous prompt is always another photo's).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import llama_cpp  # noqa: E402
from llama_cpp import _internals  # noqa: E402
from llama_cpp.llama_speculative import LlamaPromptLookupDecoding  # noqa: E402

from edgeship.llm.default import default_llm_path  # noqa: E402
from edgeship.llm.engine import Engine, LoadConfig  # noqa: E402
from edgeship.photos import photos as find_photos  # noqa: E402
from edgeship.pipeline import DescribeConfig, Pipeline  # noqa: E402
from edgeship.pipeline.describe import Event  # noqa: E402

PHOTOS = ["chelsea", "coffee", "astronaut", "motorcycle_left"]
MAX_TOKENS = 48
RP = 1.15
pc = time.perf_counter


class Rec:
    """Wraps llm.eval and llm.sample of one Llama instance (instance attributes shadow the methods)."""

    def __init__(self, llm):
        self.llm = llm
        self.evals: list[tuple[float, float, int]] = []
        self.samples: list[tuple[float, float]] = []
        cls = type(llm)
        ev, sa = cls.eval, cls.sample

        def eval_(tokens):
            t = pc()
            n = len(tokens)
            ev(llm, tokens)
            self.evals.append((t, pc(), n))

        def sample_(*a, **k):
            t = pc()
            tok = sa(llm, *a, **k)
            self.samples.append((t, pc()))
            return tok

        llm.eval = eval_
        llm.sample = sample_

    def clear(self):
        self.evals.clear()
        self.samples.clear()

    def summary(self, t0: float, t1: float) -> dict:
        """Timings for a run from t0 to t1; the first eval at or after t0 is the prompt's."""
        evs = [e for e in self.evals if e[0] >= t0]
        if not evs:
            return {}
        p_end = evs[0][1]
        g_evs = evs[1:]
        g_s = [s for s in self.samples if s[0] >= p_end]
        gen = (t1 - p_end) * 1e3
        ev_ms = sum(b - a for a, b, _ in g_evs) * 1e3
        sa_ms = sum(b - a for a, b in g_s) * 1e3
        return {"prompt_ms": (p_end - t0) * 1e3, "prompt_tokens_evaluated": evs[0][2], "gen_ms": gen,
                "eval_ms": ev_ms, "sample_ms": sa_ms, "py_ms": gen - ev_ms - sa_ms,
                "gen_evals": len(g_evs), "gen_tokens_evaluated": sum(n for *_, n in g_evs),
                "samples": len(g_s) + (1 if any(s[0] >= t0 and s[0] < p_end for s in self.samples) else 0)}


# ---------------------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--bundle", default="/tmp/edgeship-bench-lite0",
                    help="EfficientNet-Lite0 bundle (bench/pipeline.py exports it there)")
    ap.add_argument("--json", default="bench/results/llm_paths.json")
    ap.add_argument("--only", default="", help="comma list of config names (default: all)")
    ap.add_argument("--interleave", choices=["config", "photo"], default="config",
                    help="config: each configuration runs the 4 photos in a row (prompt phase as after another photo); "
                         "photo: for each photo every configuration in turn (finer A/B; the prompt is then cached)")
    a = ap.parse_args()

    gguf = str(default_llm_path())
    photos = find_photos()
    load0 = os.getloadavg()
    config = DescribeConfig(max_tokens=MAX_TOKENS)
    pipe = Pipeline.load(a.bundle, gguf, config, threads=2, n_ctx=2048)  # exactly what `edgeship describe` loads
    A = pipe.engine.llama
    recA = Rec(A)
    model = pipe.model
    task = model.task
    top_k = max(config.listed, model.bundle.manifest.postprocessing.top_k)
    P = {}
    for name in PHOTOS:
        pred = model.predict(photos[name], top_k=top_k)
        size = (pred.meta.width, pred.meta.height)
        gen = pipe.generation(task, pred.output, size, model=model.name)
        P[name] = {"output": pred.output, "size": size, "tokens": list(gen.tokens),
                   "messages": pipe.messages(task, pred.output, size, model=model.name), "user": gen.prompt_text}

    # A second Llama on the same file for speculative decoding (draft_model forces logits_all=True).
    B = llama_cpp.Llama(model_path=gguf, n_ctx=2048, n_batch=512, n_threads=2, n_threads_batch=2,
                        logits_all=True, verbose=False)
    recB = Rec(B)
    engB = Engine(B, Path(gguf), "smollm2-B", LoadConfig(n_ctx=2048, n_threads=2, logits_all=True), 0.0)
    pipeB = Pipeline(engB, config, tasks=(task,))
    pipeB.warm()

    eog = llama_cpp.llama_vocab_is_eog
    vocabA = A._model.vocab

    # --- configurations: each returns (text, completion_tokens, t0, t1, extra) ---------------------------

    def cfg_completion(stream):
        def run(name):
            toks = P[name]["tokens"]
            t0 = pc()
            if stream:
                parts = []
                for ch in A.create_completion(toks, max_tokens=MAX_TOKENS, temperature=0.0, repeat_penalty=RP,
                                              stream=True):
                    parts.append(ch["choices"][0]["text"])
                t1 = pc()
                return "".join(parts), None, t0, t1, {"chunks": len(parts)}
            out = A.create_completion(toks, max_tokens=MAX_TOKENS, temperature=0.0, repeat_penalty=RP)
            t1 = pc()
            return out["choices"][0]["text"], out["usage"]["completion_tokens"], t0, t1, {}
        return run, recA

    def cfg_chat(stream):
        def run(name):
            msgs = P[name]["messages"]
            t0 = pc()
            if stream:
                parts = []
                for ch in A.create_chat_completion(msgs, max_tokens=MAX_TOKENS, temperature=0.0, repeat_penalty=RP,
                                                   stream=True):
                    parts.append(ch["choices"][0]["delta"].get("content") or "")
                t1 = pc()
                return "".join(parts), None, t0, t1, {}
            out = A.create_chat_completion(msgs, max_tokens=MAX_TOKENS, temperature=0.0, repeat_penalty=RP)
            t1 = pc()
            return out["choices"][0]["message"]["content"], out["usage"]["completion_tokens"], t0, t1, {}
        return run, recA

    def cfg_describe():
        """`edgeship describe`'s own loop: Pipeline.describe on the photo (vision + PrefixedGeneration)."""
        def run(name):
            parts, done = [], None
            t0 = pc()
            for ev in pipe.describe(photos[name]):
                if ev.kind == "token":
                    parts.append(ev.data["text"])
                elif ev.kind == "done":
                    done = ev.data
            t1 = pc()
            return ("".join(parts), done["usage"]["completion_tokens"], t0, t1,
                    {"edgeship_timing_ms": done["timing_ms"]})
        return run, recA

    def edgeship_gen(p, rec_name=None):
        def run(name):
            d = P[name]
            gen = p.generation(task, d["output"], d["size"], model=model.name)
            parts = []
            t0 = pc()
            for piece in gen:
                parts.append(piece)
                Event("token", {"text": piece})
            t1 = pc()
            return "".join(parts), gen.completion_tokens, t0, t1, {"first_to_last_ms": (gen.t_end - gen.t_first) * 1e3}
        return run

    def cfg_generate():
        """Bare Llama.generate: tokens only, detokenised once at the end."""
        def run(name):
            toks = P[name]["tokens"]
            out = []
            t0 = pc()
            g = A.generate(toks, temp=0.0, repeat_penalty=RP)
            for t in g:
                if eog(vocabA, t):
                    break
                out.append(t)
                if len(out) >= MAX_TOKENS:
                    break
            g.close()
            t1 = pc()
            return A.detokenize(out).decode("utf-8", "replace"), len(out), t0, t1, {}
        return run, recA

    def cfg_ctypes():
        """Lowest level: prompt via Llama.eval (prefix reuse by hand), then llama_decode + a sampler chain."""
        ctx = A._ctx.ctx
        arr = (llama_cpp.llama_token * 1)()

        def run(name):
            toks = P[name]["tokens"]
            t0 = pc()
            n_same = 0
            for x, y in zip(A.input_ids[:A.n_tokens], toks):
                if x != y:
                    break
                n_same += 1
            n_same = min(n_same, len(toks) - 1)
            A._ctx.kv_cache_seq_rm(-1, n_same, -1)
            A.n_tokens = n_same
            A.eval(toks[n_same:])  # recorded as the prompt's eval
            s = _internals.LlamaSampler()
            s.add_penalties(A._n_vocab, A.last_n_tokens_size, RP, 0.0, 0.0)
            s.add_greedy()
            out = []
            while True:
                t = llama_cpp.llama_sampler_sample(s.sampler, ctx, -1)
                if eog(vocabA, t):
                    break
                out.append(t)
                if len(out) >= MAX_TOKENS:
                    break
                arr[0] = t
                if llama_cpp.llama_decode(ctx, llama_cpp.llama_batch_get_one(arr, 1)) != 0:
                    raise RuntimeError("decode")
            t1 = pc()
            k = len(out) - (1 if len(out) >= MAX_TOKENS else 0)  # evaluated generated tokens
            A.input_ids[A.n_tokens:A.n_tokens + k] = out[:k]
            A.n_tokens += k
            s.close()
            return A.detokenize(out).decode("utf-8", "replace"), len(out), t0, t1, {"decodes": k}
        return run, recA

    def cfg_spec(k):
        draft = LlamaPromptLookupDecoding(num_pred_tokens=k) if k else None

        def run(name):
            B.draft_model = draft
            try:
                return edgeship_gen(pipeB)(name)
            finally:
                B.draft_model = None
        return run, recB

    def cfg_threads(nt):
        def run(name):
            llama_cpp.llama_set_n_threads(A._ctx.ctx, nt, 2)
            try:
                return edgeship_gen(pipe)(name)
            finally:
                llama_cpp.llama_set_n_threads(A._ctx.ctx, 2, 2)
        return run, recA

    def cfg_async(busy, work=0.001, nap=0.003):
        """The generation on a worker thread, pieces to an asyncio loop through a queue (call_soon_threadsafe),
        the loop building each SSE event; busy: the loop also runs a task that spins `work` s of Python then sleeps `nap` s
        (1 ms per 4 ms: ~25% of a core; 0.1 ms per 5 ms: ~2%)."""
        def run(name):
            d = P[name]
            res = {}

            async def main_():
                loop = asyncio.get_running_loop()
                q: asyncio.Queue = asyncio.Queue()
                stop = False
                spent = [0.0]

                async def busy_task():
                    while not stop:
                        t = pc()
                        x = 0
                        while pc() - t < work:
                            x += 1
                        spent[0] += pc() - t
                        await asyncio.sleep(nap)

                bt = asyncio.ensure_future(busy_task()) if busy else None
                await asyncio.sleep(0.01)
                gen = pipe.generation(task, d["output"], d["size"], model=model.name)

                def worker():
                    try:
                        for piece in gen:
                            loop.call_soon_threadsafe(q.put_nowait, piece)
                    finally:
                        loop.call_soon_threadsafe(q.put_nowait, None)

                parts = []
                t0 = pc()
                th = threading.Thread(target=worker)
                th.start()
                while True:
                    piece = await q.get()
                    if piece is None:
                        break
                    parts.append(piece)
                    Event("token", {"text": piece}).sse()
                t1 = pc()
                th.join()
                stop = True
                if bt:
                    await bt
                res.update(text="".join(parts), n=gen.completion_tokens, t0=t0, t1=t1,
                           extra={"first_to_last_ms": (gen.t_end - gen.t_first) * 1e3, "busy_s": spent[0]})

            asyncio.run(main_())
            return res["text"], res["n"], res["t0"], res["t1"], res["extra"]
        return run, recA

    configs = {
        "a_completion_nostream": cfg_completion(False),
        "b_completion_stream": cfg_completion(True),
        "a2_chat_nostream": cfg_chat(False),
        "b2_chat_stream": cfg_chat(True),
        "c_edgeship_describe": cfg_describe(),
        "c2_edgeship_generation": (edgeship_gen(pipe), recA),
        "d1_llama_generate": cfg_generate(),
        "d2_ctypes_decode_loop": cfg_ctypes(),
        "s0_B_logits_all_nodraft": cfg_spec(0),
        "s2_B_lookup_k2": cfg_spec(2),
        "s4_B_lookup_k4": cfg_spec(4),
        "s10_B_lookup_k10": cfg_spec(10),
        "t1_threads_1_batch_2": cfg_threads(1),
        "t2_threads_2_batch_2": cfg_threads(2),
        "q0_thread_queue_idle_loop": cfg_async(False),
        "q1_thread_queue_busy_loop_1of4ms": cfg_async(True),
        "q2_thread_queue_light_loop_0.1of5ms": cfg_async(True, 0.0001, 0.005),
    }
    if a.only:
        configs = {k: v for k, v in configs.items() if k in a.only.split(",")}
    names = list(configs)

    def once(cname, photo):
        run, rec = configs[cname]
        rec.clear()
        text, n, t0, t1, extra = run(photo)
        row = {"config": cname, "photo": photo, "text": text, "completion_tokens": n,
               "total_ms": (t1 - t0) * 1e3, **rec.summary(t0, t1), **extra}
        return row

    # warm-up: every configuration once on one photo (not recorded)
    for c in names:
        once(c, PHOTOS[-1])
    rows = []
    tstart = pc()
    for r in range(a.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        if r % 2:
            order = order[::-1]
        if a.interleave == "config":
            plan = [(c, ph) for c in order for ph in PHOTOS]
        else:
            plan = [(c, ph) for i, ph in enumerate(PHOTOS) for c in (order if i % 2 == 0 else order[::-1])]
        for c, ph in plan:
            row = once(c, ph)
            row["round"] = r
            rows.append(row)
        print(f"round {r + 1}/{a.rounds} done, {pc() - tstart:.0f} s", flush=True)

    # --- summary ----------------------------------------------------------------------------------------
    ref = {ph: next(x["text"] for x in rows if x["config"] == "c2_edgeship_generation" and x["photo"] == ph)
           if "c2_edgeship_generation" in names else None for ph in PHOTOS}
    ref_n = {ph: next(x["completion_tokens"] for x in rows if x["config"] == "c2_edgeship_generation"
                      and x["photo"] == ph) if "c2_edgeship_generation" in names else 0 for ph in PHOTOS}
    summary = {}
    for c in names:
        rs = [x for x in rows if x["config"] == c]
        texts = {ph: {x["text"] for x in rs if x["photo"] == ph} for ph in PHOTOS}
        same = all(len(texts[ph]) == 1 and (ref[ph] is None or texts[ph] == {ref[ph]}) for ph in PHOTOS)
        # per round: the sum over the 4 photos (a describe of each), then median over rounds
        per_round = {}
        for x in rs:
            d = per_round.setdefault(x["round"], {"gen_ms": 0, "eval_ms": 0, "sample_ms": 0, "py_ms": 0,
                                                  "prompt_ms": 0, "total_ms": 0, "tok": 0, "evals": 0})
            for k in ("gen_ms", "eval_ms", "sample_ms", "py_ms", "prompt_ms", "total_ms"):
                d[k] += x.get(k, 0)
            d["evals"] += x.get("gen_evals", 0)
        # completion tokens: the run's own count, or (streamed OpenAI chunks carry none) the reference's
        ntok = sum(next(x["completion_tokens"] for x in rs if x["photo"] == ph) or ref_n[ph] for ph in PHOTOS)
        s = {"identical_text_all_photos": same, "completion_tokens_4photos": ntok,
             "gen_evals_4photos": statistics.median(d["evals"] for d in per_round.values())}
        for k in ("gen_ms", "eval_ms", "sample_ms", "py_ms", "prompt_ms", "total_ms"):
            vals = [d[k] for d in per_round.values()]
            s[k + "_4photos_median"] = statistics.median(vals)
            s[k + "_4photos_min_max"] = [min(vals), max(vals)]
        s["gen_ms_per_photo_median"] = s["gen_ms_4photos_median"] / 4
        s["ms_per_completion_token"] = s["gen_ms_4photos_median"] / ntok if ntok else None
        s["per_photo_gen_ms_median"] = {ph: statistics.median(x["gen_ms"] for x in rs if x["photo"] == ph)
                                        for ph in PHOTOS}
        if "c2_edgeship_generation" in names:
            base = {(x["round"], x["photo"]): x["gen_ms"] for x in rows if x["config"] == "c2_edgeship_generation"}
            ratios = [x["gen_ms"] / base[(x["round"], x["photo"])] for x in rs]
            s["paired_gen_ratio_vs_c2_median"] = statistics.median(ratios)
            s["paired_gen_ratio_vs_c2_min_max"] = [min(ratios), max(ratios)]
        summary[c] = s
    out = {"interleave": a.interleave, "cpu": open("/proc/cpuinfo").read().split("model name")[1].split("\n")[0].strip(": \t"),
           "loadavg_start": load0, "loadavg_end": os.getloadavg(), "rounds": a.rounds,
           "llama_cpp_python": llama_cpp.__version__, "gguf": gguf,
           "prompts": {ph: {"user": P[ph]["user"], "tokens": len(P[ph]["tokens"])} for ph in PHOTOS},
           "reference_text": ref, "summary": summary, "rows": rows}
    Path(a.json).write_text(json.dumps(out, indent=1))
    hdr = f"{'config':28s} {'gen ms(4ph) med [min-max]':>28s} {'ms/tok':>7s} {'tok':>4s} {'evals':>5s} {'eval':>6s} {'samp':>5s} {'py':>5s} {'prompt':>6s} same"
    print(hdr)
    for c, s in summary.items():
        mm = s["gen_ms_4photos_min_max"]
        print(f"{c:28s} {s['gen_ms_4photos_median']:8.1f} [{mm[0]:7.1f}-{mm[1]:7.1f}]     "
              f"{(s['ms_per_completion_token'] or 0):7.2f} {s['completion_tokens_4photos']:4d} {s['gen_evals_4photos']:5.0f} "
              f"{s['eval_ms_4photos_median']:6.1f} {s['sample_ms_4photos_median']:5.1f} {s['py_ms_4photos_median']:5.1f} "
              f"{s['prompt_ms_4photos_median']:6.1f} {'yes' if s['identical_text_all_photos'] else 'NO'}"
              f"  paired/c2 {s.get('paired_gen_ratio_vs_c2_median', float('nan')):.3f}")
    print(f"load {load0} -> {os.getloadavg()}; wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
