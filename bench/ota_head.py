"""Bytes a head-only update fetches, on the embedded default model (EfficientNet-Lite0, ImageNet-pretrained).

    python bench/ota_head.py          # prints a table, writes bench/results/ota_head.json

Two real cases, each through a real repository, HTTP server and agent (the bytes are the agent's
own count of what it received: TUF metadata, channel, recipe and chunks):
- imagenet-1000: the 1000-class head retrained (every weight of the final layer changes by ~1 %);
- custom-10: the usual edge case, a 10-class head fine-tuned on the pretrained backbone (version 1:
  10 ImageNet classes; version 2: that head retrained).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]
os.environ["PYTHONPATH"] = f"{ROOT / 'src'}:{ROOT}"


def head_of(model):
    """The initializers of the last Gemm (weight, bias) of an ONNX model."""
    gemm = [n for n in model.graph.node if n.op_type in ("Gemm", "MatMul")][-1]
    inits = {i.name: i for i in model.graph.initializer}
    return [inits[name] for name in gemm.input if name in inits], gemm


def variant(src: Path, out: Path, version: str, rows: list[int] | None, tweak: float, seed: int) -> Path:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    from edgeship.bundle import open_bundle, write_bundle
    from edgeship.runtime.session import create_session

    b = open_bundle(src)
    model = onnx.load(str(b.model_path))
    (w, *bias), gemm = head_of(model)
    rng = np.random.default_rng(seed)
    wa = numpy_helper.to_array(w)
    trans_b = any(a.name == "transB" and a.i == 1 for a in gemm.attribute)
    if rows is not None:
        wa = wa[rows] if trans_b else wa[:, rows]
    wa = wa * (1 + tweak * rng.standard_normal(wa.shape).astype(wa.dtype))
    w.CopyFrom(numpy_helper.from_array(wa.astype(np.float32), w.name))
    labels = b.labels
    if bias:
        ba = numpy_helper.to_array(bias[0])
        ba = ba[rows] if rows is not None else ba
        bias[0].CopyFrom(numpy_helper.from_array(ba.astype(np.float32), bias[0].name))
    if rows is not None:
        labels = [labels[i] for i in rows]
        for o in model.graph.output:
            o.type.tensor_type.shape.dim[-1].dim_value = len(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out.with_suffix(".onnx")))
    x = b.golden()[0]
    y = create_session(out.with_suffix(".onnx")).run(None, {b.manifest.inputs[0].name if b.manifest.inputs else
                                                              model.graph.input[0].name: x})[0]
    m = dataclasses.replace(b.manifest, version=version, files={},
                            outputs=[dataclasses.replace(o, shape=[o.shape[0], len(labels)]) for o in b.manifest.outputs])
    write_bundle(out, m, out.with_suffix(".onnx"), labels=labels, golden=(x, y), overwrite=True)
    return out


def measure(work: Path, v1: Path, v2: Path) -> dict:
    from edgeship.bundle import open_bundle
    from edgeship.ota.agent import Agent, AgentConfig
    from edgeship.ota.httpd import RepoServer
    from edgeship.ota.repo import init_repo
    from edgeship.ota.store import Store

    repo = init_repo(work / "repo")
    repo.publish(v1)
    srv = RepoServer(repo.public).start()
    try:
        store = Store(work / "store")
        agent = Agent(store, AgentConfig(srv.url, min_free_bytes=0), repo.root_file.read_bytes())
        first = agent.check(open_bundle(v1).manifest.name)  # version 1 over the air: everything
        full = agent.client.fetcher.bytes_received
        pub = repo.publish(v2)
        agent2 = Agent(store, AgentConfig(srv.url, min_free_bytes=0))
        t0 = time.perf_counter()
        result = agent2.check(open_bundle(v2).manifest.name)
        took = time.perf_counter() - t0
        fetched = agent2.client.fetcher.bytes_received
    finally:
        srv.stop()
    bundle = sum((v2 / n).stat().st_size for n in [*open_bundle(v2).manifest.files, "edgeship.json"])
    return {"first_install": first[:60], "update": result[:120], "bundle_bytes": bundle, "full_fetch_bytes": full,
            "update_fetch_bytes": fetched, "share": fetched / bundle, "new_chunk_bytes": pub.new_bytes,
            "update_seconds": round(took, 2)}


def main() -> int:
    from edgeship.optimize.export import ExportSpec, export

    work = Path(tempfile.mkdtemp(prefix="ota-head-"))
    base = work / "lite0"
    export("efficientnet-lite0", base, ExportSpec(dynamic_batch=True), overwrite=True)
    ten = list(range(281, 291))  # ten ImageNet classes (cats, foxes, ...): a 10-class fine-tune's head
    cases = {
        "imagenet-1000": (variant(base, work / "a1", "1", None, 0.0, 0), variant(base, work / "a2", "2", None, 0.01, 1)),
        "custom-10": (variant(base, work / "c1", "1", ten, 0.0, 0), variant(base, work / "c2", "2", ten, 0.01, 2)),
    }
    results = {}
    for name, (v1, v2) in cases.items():
        results[name] = measure(work / name, v1, v2)
    out = ROOT / "bench" / "results" / "ota_head.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"{'case':<16}{'bundle MB':>10}{'update fetched MB':>19}{'share':>8}  (goal <= 20%)")
    for name, r in results.items():
        print(f"{name:<16}{r['bundle_bytes'] / 1e6:>10.2f}{r['update_fetch_bytes'] / 1e6:>19.3f}{r['share']:>8.1%}"
              f"  {r['update'][:70]}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
