"""The GPU check, run by bench/gpu_check.sh on a machine with an NVIDIA GPU (a few minutes).

    PYTHONPATH=gpu-wheels/site:src python bench/gpu_check.py [--models ...] [--batches 1,32] [--runs 200]

For MobileNetV3-Small, EfficientNet-B0 and ResNet-50 (torchvision, random weights: timing does not
depend on them) at batch 1 and 32, in one process, p50 ms of the model call:

- torch fp16 + CUDA graph: the module in half precision, captured once, replayed (device-resident
  input, no host copies: the GPU's own time);
- ORT CUDA provider, FP32, with ``enable_cuda_graph`` and I/O binding (device-resident input);
- edgeship ``--provider cuda`` (Model.run: numpy in, numpy out, so host copies included);
- edgeship TensorRT fp16: an engine built by edgeship's TensorRT backend (TensorRT 11: from an
  fp16 ONNX, strong typing; TensorRT 10: the FP16 builder flag), cached by version, compute
  capability and model sha256 (the second load must find it), run through Model.run (host copies
  included). Its golden check at load compares it with ONNX Runtime's FP32 output on the CPU.

Each row is measured independently of the others failing: a missing library is reported in its row.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path

import numpy as np

MODELS = ["mobilenet_v3_small", "efficientnet_b0", "resnet50"]


def p50_cuda(fn, sync, runs: int, warmup: int = 20) -> float:
    for _ in range(warmup):
        fn()
    sync()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def torch_fp16_graph(module, batch: int, size: int, runs: int) -> float:
    import torch

    m = module.half().cuda().eval()
    x = torch.randn(batch, 3, size, size, device="cuda", dtype=torch.half)
    with torch.inference_mode():
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            for _ in range(3):
                m(x)
        torch.cuda.current_stream().wait_stream(s)
        g = torch.cuda.CUDAGraph()
        with torch.cuda.graph(g):
            m(x)
    return p50_cuda(g.replay, torch.cuda.synchronize, runs)


def ort_cuda_graph(onnx_path: Path, batch: int, size: int, runs: int) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx_path), providers=[("CUDAExecutionProvider", {"enable_cuda_graph": "1"})])
    if "CUDAExecutionProvider" not in sess.get_providers():
        raise RuntimeError(f"ORT did not start the CUDA provider (it runs on {sess.get_providers()})")
    x = ort.OrtValue.ortvalue_from_numpy(np.random.randn(batch, 3, size, size).astype(np.float32), "cuda", 0)
    out_shape = [batch] + [d for d in sess.get_outputs()[0].shape[1:]]
    y = ort.OrtValue.ortvalue_from_shape_and_type(out_shape, np.float32, "cuda", 0)
    binding = sess.io_binding()
    binding.bind_ortvalue_input(sess.get_inputs()[0].name, x)
    binding.bind_ortvalue_output(sess.get_outputs()[0].name, y)
    opts = ort.RunOptions()
    return p50_cuda(lambda: sess.run_with_iobinding(binding, opts), lambda: None, runs)  # run_with_iobinding syncs


def edgeship_row(bundle_dir: Path, config, batch: int, runs: int) -> tuple[float, dict]:
    from edgeship.runtime import Model

    model = Model.load(bundle_dir, config)
    x = np.random.default_rng(0).standard_normal((batch, 3, *model.input_shape[2:])).astype(np.float32)
    info = model.describe()
    info["golden_max_error"] = model.golden_at_load.max_abs_error if model.golden_at_load else None
    ms = p50_cuda(lambda: model.run(x), lambda: None, runs)
    model.close()
    return ms, info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--batches", default="1,32")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--work", default=None)
    ap.add_argument("--json", default="bench/results/gpu_check.json")
    args = ap.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    work = Path(args.work or tempfile.mkdtemp(prefix="edgeship-gpu-"))
    env: dict = {"python": sys.version.split()[0]}
    for mod in ("torch", "onnxruntime", "tensorrt"):
        try:
            env[mod] = __import__(mod).__version__
        except Exception as exc:  # noqa: BLE001 - reported, the other rows still run
            env[mod] = f"missing ({type(exc).__name__}: {exc})"
    try:
        import onnxruntime as ort

        ort.preload_dlls()  # finds CUDA/cuDNN from the nvidia-* wheels or torch's
        env["ort_providers"] = ort.get_available_providers()
    except Exception as exc:  # noqa: BLE001
        env["ort_providers"] = f"error: {exc}"
    print(json.dumps(env, indent=1))
    from edgeship.optimize.export import ExportSpec, export
    from edgeship.runtime import RuntimeConfig

    rows = []
    for name in args.models.split(","):
        bundle_dir = work / name
        if not (bundle_dir / "edgeship.json").exists():
            export(name, bundle_dir, ExportSpec(dynamic_batch=True), overwrite=True)
        size = json.loads((bundle_dir / "edgeship.json").read_text())["preprocessing"]["size"][0]
        trt_major = int(env["tensorrt"].split(".")[0]) if env["tensorrt"][0].isdigit() else 0
        trt_cfg = None
        if trt_major >= 11:
            from edgeship.optimize.variants import VariantConfig, add_variant

            r = add_variant(bundle_dir, "tensorrt-fp16", config=VariantConfig(eval_samples=16, min_cosine=0.99),
                            keep_failed=True)
            print(f"{name}: {r.reason}")
            trt_cfg = RuntimeConfig(variant="tensorrt-fp16", options={"max_batch": str(max(batches)),
                                                                     "cache_dir": str(work / "trt")})
        elif trt_major == 10:
            trt_cfg = RuntimeConfig(backend="tensorrt", precision="fp16", golden_check=False,
                                    options={"max_batch": str(max(batches)), "cache_dir": str(work / "trt")})
        for batch in batches:
            row = {"model": name, "batch": batch}
            cases = {
                "torch fp16 + CUDA graph": lambda: torch_fp16_graph(
                    __import__("edgeship.optimize.models", fromlist=["resolve_model"]).resolve_model(name).module,
                    batch, size, args.runs),
                "ORT CUDA FP32 + CUDA graph": lambda: ort_cuda_graph(bundle_dir / "model.onnx", batch, size, args.runs),
                "edgeship --provider cuda (host copies)": lambda: edgeship_row(
                    bundle_dir, RuntimeConfig(provider="cuda"), batch, args.runs),
                "edgeship TensorRT fp16 (host copies)": lambda: edgeship_row(bundle_dir, trt_cfg, batch, args.runs)
                if trt_cfg is not None else (_ for _ in ()).throw(RuntimeError(f"no TensorRT: {env['tensorrt']}")),
            }
            for label, fn in cases.items():
                try:
                    out = fn()
                    ms, info = out if isinstance(out, tuple) else (out, None)
                    row[label] = {"p50_ms": ms, **({"runtime": info} if info else {})}
                except Exception as exc:  # noqa: BLE001 - one failing row must not hide the others
                    row[label] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
                    traceback.print_exc(limit=2)
            rows.append(row)
            print(json.dumps(row, default=str))
    labels = [k for k in rows[0] if k not in ("model", "batch")] if rows else []
    print("\n| model | batch | " + " | ".join(labels) + " |\n|---|---|" + "---|" * len(labels))
    for r in rows:
        cells = [f"{r[k]['p50_ms']:.2f}" if "p50_ms" in r[k] else "error" for k in labels]
        print(f"| {r['model']} | {r['batch']} | " + " | ".join(cells) + " |")
    engine_reuse = None
    try:  # a second load must find the engine in the cache (same TensorRT, GPU and model digest)
        if rows and trt_cfg is not None:
            from edgeship.runtime import Model

            m = Model.load(work / args.models.split(",")[-1], trt_cfg)
            engine_reuse = m.describe()["engine"]
            m.close()
            print(f"engine cache on reload: {engine_reuse}")
    except Exception as exc:  # noqa: BLE001
        engine_reuse = {"error": str(exc)}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"environment": env, "rows": rows, "engine_reuse": engine_reuse},
                                          indent=1, default=str))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
