"""A RE-CREATION of the edge-AI article's multi-model pipeline, kept for comparison only. Not edgeship code.

The article's ``EdgeMultiModelPipeline`` runs an ONNX vision model in its own process, then asks a
separate LLM server (Ollama there) for a description with one blocking HTTP call, and returns both.
Here the LLM server is llama-cpp-python's OpenAI server (``python -m llama_cpp.server``), started
by bench/pipeline.py with the same GGUF, threads and context as edgeship's; this process is the
article's application. What is kept from the article: one ONNX Runtime session with
``intra_op_num_threads`` and ORT_ENABLE_ALL, PIL decoding and float64 normalisation, the vision
step and the LLM step one after the other, the LLM answer as one blocking, non-streamed call.

Changes, each the smallest that makes the comparison like for like:
- preprocessing uses the bundle's resize, crop, mean and std, the crop box resized in one step
  as edgeship does (the article's ImageNet constants and square resize give EfficientNet-Lite0
  other scores, hence another prompt; on chelsea.png even a different crop order swaps its two
  near-equal top classes), and the float64 array is cast to float32 before ``session.run`` (ONNX
  Runtime refuses float64);
- the prompt is edgeship's describe prompt from the same top classes (rendered with edgeship's
  template code, so both designs send the very same words), and sampling is the same (greedy,
  the same max_tokens and repeat penalty) instead of the article's temperature 0.3;
- besides the article's blocking call, a streamed call (``"stream": true``) is measured too, so
  the time to the first description token is also shown for the article's design at its best.

Driven by bench/pipeline.py over stdin, one JSON command a line, one JSON answer a line:
    {"op": "describe", "image": PATH, "stream": false}
    {"op": "rate", "image": PATH, "rate": 10, "duration": 20}      # vision alone at a steady rate
    {"op": "rss"}                                                   # this process's peak RSS
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

import httpx
import numpy as np
import onnxruntime as ort
from PIL import Image


@dataclass
class VisionResult:
    classes: list[dict]  # top classes, best first: label and score
    latency_ms: float


class EdgeMultiModelPipeline:
    def __init__(self, bundle: str, llm_url: str, vision_threads: int, system: str, template: str, listed: int,
                 max_tokens: int, repeat_penalty: float):
        manifest = json.load(open(f"{bundle}/edgeship.json"))
        so = ort.SessionOptions()
        so.intra_op_num_threads = vision_threads
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(f"{bundle}/{manifest['model']}", sess_options=so,
                                            providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.pre = manifest["preprocessing"]
        with open(f"{bundle}/labels.txt") as f:
            self.labels = [line.strip() for line in f]
        self.llm_url = llm_url
        self.client = httpx.Client(timeout=600)
        from edgeship.pipeline.prompt import PromptTemplate  # the same words as edgeship sends

        self.template = PromptTemplate(system, template)
        self.system, self.listed = system, listed
        self.max_tokens, self.repeat_penalty = max_tokens, repeat_penalty

    def preprocess_image(self, image: Image.Image) -> np.ndarray:
        p = self.pre
        w, h = image.size
        k = p["resize_to"] / min(w, h)  # short side to resize_to, centre crop: one resize of the crop box
        th, tw = p["size"]
        left, top = (w - tw / k) / 2, (h - th / k) / 2
        image = image.resize((tw, th), Image.BILINEAR, box=(left, top, left + tw / k, top + th / k))
        arr = np.array(image) * p["scale"]  # float64, as in the article
        arr = (arr - np.array(p["mean"])) / np.array(p["std"])
        return arr.transpose(2, 0, 1)[np.newaxis, ...].astype(np.float32)

    def run_vision(self, image: Image.Image) -> VisionResult:
        t0 = time.perf_counter()
        x = self.preprocess_image(image)
        logits = self.session.run(None, {self.input_name: x})[0][0]
        probs = np.exp(logits - logits.max())
        probs = probs / probs.sum()
        top = np.argsort(-probs)[: max(self.listed, 5)]
        classes = [{"label": self.labels[i], "score": float(probs[i])} for i in top]
        return VisionResult(classes, (time.perf_counter() - t0) * 1e3)

    def prompt(self, v: VisionResult) -> str:
        from edgeship.bundle import Task

        return self.template.render(Task.CLASSIFY, {"classes": v.classes}, None, self.listed)

    def run_llm_description(self, v: VisionResult, stream: bool) -> tuple[str, float, int]:
        """The description, when its first text arrived (perf_counter), and how many chunks carried text."""
        body = {"messages": [{"role": "system", "content": self.system}, {"role": "user", "content": self.prompt(v)}],
                "temperature": 0.0, "max_tokens": self.max_tokens, "repeat_penalty": self.repeat_penalty,
                "stream": stream}
        if not stream:  # the article: one blocking call, the whole answer at once
            r = self.client.post(self.llm_url + "/v1/chat/completions", json=body)
            r.raise_for_status()
            return r.json()["choices"][0]["message"]["content"].strip(), time.perf_counter(), 1
        parts, t_first = [], 0.0
        with self.client.stream("POST", self.llm_url + "/v1/chat/completions", json=body) as r:
            r.raise_for_status()
            for line in r.iter_lines():
                if not line.startswith("data: {"):
                    continue
                delta = json.loads(line[6:])["choices"][0]["delta"].get("content")
                if delta:
                    t_first = t_first or time.perf_counter()
                    parts.append(delta)
        return "".join(parts).strip(), t_first, len(parts)

    def process_image(self, path: str, stream: bool) -> dict:
        t0 = time.perf_counter()
        image = Image.open(path).convert("RGB")
        vision = self.run_vision(image)
        t_vision = time.perf_counter()
        text, t_first, chunks = self.run_llm_description(vision, stream)
        t_end = time.perf_counter()
        return {"vision_ms": (t_vision - t0) * 1e3, "first_token_ms": (t_first - t0) * 1e3,
                "total_ms": (t_end - t0) * 1e3, "description": text, "prompt": self.prompt(vision),
                "top1": vision.classes[0]["label"], "chunks": chunks}

    def steady_rate(self, path: str, rate: float, duration: float) -> dict:
        """Vision alone at ``rate`` a second for ``duration`` seconds, on a fixed schedule (late runs start at once)."""
        data = open(path, "rb").read()
        import io

        lat, late = [], 0
        t0 = time.perf_counter()
        n = int(rate * duration)
        for i in range(n):
            due = t0 + i / rate
            now = time.perf_counter()
            if now < due:
                time.sleep(due - now)
            else:
                late += 1
            start = time.perf_counter()
            self.run_vision(Image.open(io.BytesIO(data)).convert("RGB"))
            lat.append((time.perf_counter() - start) * 1e3)
        return {"latencies_ms": lat, "late": late}


def _peak_rss() -> int | None:
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("--llm-url", required=True)
    p.add_argument("--threads", type=int, required=True)
    p.add_argument("--system", required=True)
    p.add_argument("--template", required=True)
    p.add_argument("--listed", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=48)
    p.add_argument("--repeat-penalty", type=float, default=1.15)
    a = p.parse_args()
    app = EdgeMultiModelPipeline(a.bundle, a.llm_url, a.threads, a.system, a.template, a.listed, a.max_tokens,
                                 a.repeat_penalty)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["op"] == "describe":
            out = app.process_image(cmd["image"], cmd.get("stream", False))
        elif cmd["op"] == "rate":
            out = app.steady_rate(cmd["image"], cmd["rate"], cmd["duration"])
        elif cmd["op"] == "rss":
            out = {"peak_rss_bytes": _peak_rss()}
        else:
            out = {"error": f"unknown op {cmd['op']!r}"}
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
