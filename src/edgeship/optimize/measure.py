"""Measure a model the way it will be deployed: an ONNX file in ONNX Runtime on this host.

>>> m = measure_onnx("student/model.onnx", test_set, threads=2)
>>> m.accuracy, m.p50_ms, m.file_bytes, m.flops
(0.8843, 0.21, 378112, 15256064)
>>> measure_module(pruned, (1, 28, 28), test_set)   # exports to a temporary ONNX file first

Every number is measured in the call: parameters and FLOPs counted from the graph (or from
torch-pruning's counter for torch modules), file size from disk, latency at batch 1 over
``runs`` calls after a warm-up, accuracy over the whole dataset given.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from .._deps import require
from .data import ArrayDataset


@dataclass(frozen=True)
class Measurement:
    params: Union[int, None] = None
    macs: Union[int, None] = None
    flops: Union[int, None] = None  # 2 x MACs of Conv/Gemm/MatMul
    file_bytes: Union[int, None] = None
    accuracy: Union[float, None] = None  # top-1 on the dataset measured, 0..1
    samples: Union[int, None] = None  # how many samples the accuracy is over
    p50_ms: Union[float, None] = None  # batch 1
    p95_ms: Union[float, None] = None
    threads: Union[int, None] = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def torch_cost(module: Any, input_shape: tuple[int, ...]) -> tuple[int, int]:
    """(params, MACs) of a torch module at batch 1, from torch-pruning's counter.

    MACs of convolutions and linear layers only, as :func:`edgeship.targets.flops.onnx_cost` counts Conv
    and Gemm, so that a budget searched here is the budget the report measures on the ONNX graph.
    """
    torch = require("torch", "optimize")
    tp = require("torch_pruning", "optimize", "counting FLOPs")
    nn = torch.nn
    was_training = module.training
    module.eval()
    _, params, layer_macs, _ = tp.utils.count_ops_and_params(module, torch.zeros(1, *input_shape), layer_wise=True)
    module.train(was_training)
    heavy = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)
    macs = sum(int(v or 0) for m, v in layer_macs.items() if isinstance(m, heavy))
    return int(params), int(macs)


def session(path: Union[str, os.PathLike], threads: int = 2) -> Any:
    from ..runtime.session import RuntimeConfig, create_session

    return create_session(path, RuntimeConfig(intra_op_threads=threads, inter_op_threads=1))


def onnx_accuracy(sess: Any, data: ArrayDataset, batch_size: int = 250) -> float:
    """Top-1 accuracy of an ONNX Runtime session; batches of ``batch_size`` when the graph allows."""
    first = sess.get_inputs()[0]
    fixed = first.shape[0] if isinstance(first.shape[0], int) else None
    step = fixed or batch_size
    correct = 0
    for start in range(0, len(data), step):
        x, y = data.batch(slice(start, start + step))
        if fixed and len(x) != fixed:  # a fixed-batch graph: run the tail one by one
            preds = np.concatenate([sess.run(None, {first.name: x[i:i + 1]})[0] for i in range(len(x))])
        else:
            preds = sess.run(None, {first.name: x})[0]
        correct += int((preds.argmax(1) == y).sum())
    return correct / len(data)


def measure_onnx(path: Union[str, os.PathLike], data: ArrayDataset | None = None, threads: int = 2,
                 runs: int = 200, warmup: int = 20, input_shape: tuple[int, ...] | None = None,
                 params: int | None = None) -> Measurement:
    """Size, FLOPs, accuracy (when ``data`` is given) and batch-1 latency of an ONNX file.

    ``params`` overrides the count of the graph's initializers (which has BatchNorm folded into
    the convolutions, and for INT8 graphs counts quantized weights).
    """
    from ..bench.latency import time_session
    from ..targets.flops import onnx_cost

    path = Path(path)
    sess = session(path, threads)
    cost = onnx_cost(path)
    first = sess.get_inputs()[0]
    shape = input_shape or (data.shape if data is not None else tuple(d if isinstance(d, int) else 1 for d in first.shape[1:]))
    x = data.batch(slice(0, 1))[0] if data is not None else np.random.default_rng(0).standard_normal((1, *shape)).astype(np.float32)
    lat = time_session(sess, {first.name: x}, warmup=warmup, runs=runs, batch=1)
    acc = onnx_accuracy(sess, data) if data is not None else None
    return Measurement(params if params is not None else int(cost.params), int(cost.macs), int(cost.flops),
                       path.stat().st_size, acc, len(data) if data is not None else None,
                       float(lat.p50_ms), float(lat.p95_ms), threads)


def export_temp(module: Any, input_shape: tuple[int, ...], folder: Union[str, os.PathLike], name: str = "model",
                dynamic_batch: bool = True) -> Path:
    """Export ``module`` through edgeship's validated exporter into ``folder``; the ONNX path."""
    from .export import ExportSpec, export_module

    c, h, w = input_shape
    spec = ExportSpec(input_size=(h, w), channels=c, dynamic_batch=dynamic_batch)
    result = export_module(module, Path(folder) / name, spec, name=name, overwrite=True)
    return result.bundle.model_path


def measure_module(module: Any, input_shape: tuple[int, ...], data: ArrayDataset | None = None, threads: int = 2,
                   runs: int = 200, warmup: int = 20) -> Measurement:
    """Measure a torch module through its exported ONNX; parameters are torch's (before BatchNorm folding).

    FLOPs come from the ONNX graph like every other row of a report (INT8 ones included), so rows
    compare like with like; torch-pruning's counter is used inside the pruning search only.
    """
    params = int(sum(p.numel() for p in module.parameters()))
    with tempfile.TemporaryDirectory(prefix="edgeship-measure-") as tmp:
        path = export_temp(module, input_shape, tmp)
        return measure_onnx(path, data, threads, runs, warmup, input_shape, params=params)
