"""Builders of the OTA tests: real ONNX models in versions, a repository made by `edgeship ota`, an HTTP
server with Range (and faults on request), a device store."""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

import numpy as np
import pytest

from edgeship.bundle import Manifest, Preprocessing, TensorSpec, open_bundle, write_bundle
from edgeship.ota.httpd import RangeHandler, RepoServer

SIZE, CLASSES = 16, 4


def build_model(path: Path, heavy: int = 1, head_seed: int = 0, broken: bool = False, width: int = 384,
                wrong: bool = False, body_seed: int = 0) -> Path:
    """Conv -> ReLU -> GAP -> Gemm head, plus ``heavy`` MatMuls of a [width, width] weight whose result is
    multiplied by 0 and added to the logits: same answers, ``heavy`` times the work (a slower candidate).
    ``wrong``: the head's rows reversed: a model that loads, and answers other classes."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(body_seed)
    head = np.random.default_rng(100)
    tweak = np.random.default_rng(200 + head_seed)  # a retrained head: close to the old one
    inits = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.standard_normal(8).astype(np.float32), "b"),
        numpy_helper.from_array((rng.standard_normal((width, width)) / width ** 0.5).astype(np.float32), "big"),
        numpy_helper.from_array(np.zeros((1,), np.float32), "zero"),
        numpy_helper.from_array((head.standard_normal((CLASSES, 8)) + 0.02 * head_seed * tweak.standard_normal(
            (CLASSES, 8))).astype(np.float32)[::-1 if wrong else 1].copy(), "fc"),
        numpy_helper.from_array(head.standard_normal(CLASSES).astype(np.float32)[::-1 if wrong else 1].copy(), "fcb"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["logits"], transB=1),
        # the heavy branch depends on the input, so ONNX Runtime cannot fold it away
        helper.make_node("ReduceMean", ["input"], ["s"], keepdims=0),
        helper.make_node("Mul", ["big", "s"], ["m0"]),
    ]
    last = "m0"
    for i in range(heavy):
        nodes.append(helper.make_node("MatMul", [last, "big"], [f"m{i + 1}"]))
        last = f"m{i + 1}"
    nodes += [
        helper.make_node("ReduceSum", [last], ["t"], keepdims=0),
        helper.make_node("Mul", ["t", "zero"], ["z"]),
        helper.make_node("Add", ["logits", "z"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes, "ota-tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", CLASSES])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    data = model.SerializeToString()
    if broken:  # cut in half: ONNX Runtime refuses to load it
        data = data[: len(data) // 2]
    path.write_bytes(data)
    return path


def make_bundle(out: Path, version: str, name: str = "tiny", heavy: int = 1, head_seed: int = 0,
                broken: bool = False, bad_golden: bool = False, wrong: bool = False,
                body_seed: int = 0) -> Path:
    from edgeship.runtime.session import create_session

    onnx_path = out.with_suffix(".onnx")
    build_model(onnx_path, heavy, head_seed, wrong=wrong, body_seed=body_seed)
    x = np.random.default_rng(1).standard_normal((1, 3, SIZE, SIZE)).astype(np.float32)
    y = create_session(onnx_path).run(None, {"input": x})[0]
    if bad_golden:
        y = y + 1.0
    if broken:
        build_model(onnx_path, heavy, head_seed, broken=True, body_seed=body_seed)
    manifest = Manifest(name=name, model="model.onnx", version=version,
                        inputs=[TensorSpec("input", ["batch", 3, SIZE, SIZE], "float32", "NCHW")],
                        outputs=[TensorSpec("output", ["batch", CLASSES])],
                        preprocessing=Preprocessing(size=(SIZE, SIZE), resize_to=SIZE + 2))
    write_bundle(out, manifest, onnx_path, labels=[f"class-{i}" for i in range(CLASSES)], golden=(x, y))
    return out


class FaultyHandler(RangeHandler):
    """RangeHandler whose server may cut a response short, corrupt a file, or run a hook first."""

    def send_head(self):
        srv = self.server
        srv.log.append((self.path, self.headers.get("Range")))
        if srv.before is not None:
            srv.before(self.path)
        f = super().send_head()
        if f is not None and srv.cut_after is not None and "/chunks/" in self.path and not srv.cut_done:
            srv.cut_done = True
            self._cut = srv.cut_after
        return f

    def copyfile(self, source, outputfile) -> None:
        cut = getattr(self, "_cut", None)
        if cut is None:
            return super().copyfile(source, outputfile)
        outputfile.write(source.read(cut))
        outputfile.flush()
        self.close_connection = True
        import socket

        self.connection.shutdown(socket.SHUT_RDWR)


def serve(directory: Path) -> RepoServer:
    srv = RepoServer(directory, handler=FaultyHandler).start()
    srv.httpd.log = []
    srv.httpd.before = None
    srv.httpd.cut_after = None
    srv.httpd.cut_done = False
    return srv


def republish_version(src: Path, out: Path, version: str) -> Path:
    """The same bundle under another version number."""
    b = open_bundle(src)
    write_bundle(out, dataclasses.replace(b.manifest, version=version, files={}), b.model_path,
                 labels=b.labels, golden=b.golden())
    return out


__all__ = ["FaultyHandler", "build_model", "make_bundle", "republish_version", "serve", "threading"]
