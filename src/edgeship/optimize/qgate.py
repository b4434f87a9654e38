"""The two gates of quantize(): side-by-side timing against FP32, and accuracy with a float fallback.

>>> timer = default_timer(threads=2, runs=60, sample=x)
>>> timer({"fp32": Path("model.onnx"), "int8:all": Path("q.onnx")})
{'fp32': (26.1, 27.9), 'int8:all': (12.4, 13.0)}
>>> choose_gate(Gate.AUTO, bundle, labelled=False)
(<Gate.SIMILARITY: 'similarity'>, 'the export provenance says the weights are not pretrained ...')

The accuracy gate is one of three (:class:`.qconfig.Gate`): kept accuracy on labelled data, top-1
agreement with FP32 on unlabelled data, or, for random weights, the similarity of the outputs
(:func:`output_error`). ``repair`` keeps the most sensitive nodes float when a candidate fails it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Union

import numpy as np

from ..bundle import StageName
from ..errors import InputError
from .qconfig import Gate
from .qlayouts import Plan, sensitivities

# paths (name -> model file) -> name -> (p50_ms, p95_ms); "fp32" is always among the names.
Timer = Callable[[dict[str, Path]], dict[str, tuple[float, float]]]


@dataclass
class Candidate:
    """One quantized model tried: its layout, measured speed and accuracy."""

    name: str
    why: str
    path: Path
    plan: Union[Plan, None] = None
    p50_ms: Union[float, None] = None
    p95_ms: Union[float, None] = None
    speedup: Union[float, None] = None
    agreement: Union[float, None] = None  # top-1 agreement with FP32
    accuracy: Union[float, None] = None  # labelled data only
    cosine: Union[float, None] = None  # mean cosine similarity of the outputs with FP32
    output_error: Union[float, None] = None  # see output_error(); the similarity gate's figure
    passed: Union[bool, None] = None
    excluded: list[dict[str, Any]] = field(default_factory=list)

    def row(self) -> dict[str, Any]:
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("path", "plan")}
        if self.plan is not None:
            out.update(format=self.plan.quant_format, op_types=self.plan.op_types, float_nodes=len(self.plan.exclude))
        return out


def session(path: Path, threads: int, providers: tuple[str, ...] = ("CPUExecutionProvider",)):
    from ..runtime.session import RuntimeConfig, create_session

    return create_session(path, RuntimeConfig(intra_op_threads=threads, inter_op_threads=1, providers=providers))


def default_timer(threads: int, runs: int, sample: np.ndarray, providers=("CPUExecutionProvider",)) -> Timer:
    """Time every model side by side in rounds (bench.latency.interleaved) at batch 1."""

    def timer(paths: dict[str, Path]) -> dict[str, tuple[float, float]]:
        from ..bench.latency import interleaved

        fns = {}
        for name, path in paths.items():
            sess = session(path, threads, providers)
            feed = {sess.get_inputs()[0].name: sample[None].astype(np.float32)}
            fns[name] = (lambda s=sess, f=feed: s.run(None, f))
        # Blocks of consecutive runs, alternating between models in 5 rounds: drift on a shared host
        # falls on FP32 and the candidates alike, while each block runs with its weights in cache as
        # a deployed model does. (Switching models every 2 runs measured every model cold and ranked
        # ResNet-18 layouts up to 2x differently from steady-state timing.)
        stats = interleaved(fns, warmup=5, runs=runs, rounds=5)
        return {k: (v.p50_ms, v.p95_ms) for k, v in stats.items()}

    return timer


def outputs(path: Path, samples: list[np.ndarray], threads: int) -> np.ndarray:
    sess = session(path, threads)
    name = sess.get_inputs()[0].name
    return np.stack([sess.run(None, {name: x[None].astype(np.float32)})[0].reshape(-1) for x in samples])


def output_error(out: np.ndarray, ref: np.ndarray) -> float:
    """How far ``out`` is from ``ref`` (samples x outputs), relative to how much ``ref`` varies by input.

    ``||out - ref|| / ||ref - mean(ref)||``: Frobenius norms over all samples, the mean taken over the
    samples. 0 is identical; 1 is an error as large as everything the input changes in the outputs.
    The input-independent part of FP32's outputs (the classifier's bias, a common offset) is left out
    of the scale on purpose: random-weight networks put most of their logits there, and against it
    even an INT8 model that had lost every input-dependent detail would look close (cosine 0.999).
    """
    ref = ref.astype(np.float64)
    err = float(np.linalg.norm(out.astype(np.float64) - ref))
    scale = float(np.linalg.norm(ref - ref.mean(axis=0)))
    if scale == 0.0:  # outputs that do not depend on the input: compare with their size instead
        scale = float(np.linalg.norm(ref))
    if scale == 0.0:
        return 0.0 if err == 0.0 else float("inf")
    return err / scale


def cosine(out: np.ndarray, ref: np.ndarray) -> float:
    """Mean over samples of the cosine similarity of ``out`` and ``ref`` (rows); 1 where both are zero.

    In float64 and without an additive epsilon: random-weight EfficientNet-B0 gives logits of 1e-13,
    whose norms an epsilon of 1e-12 would swamp (every cosine 0).
    """
    out, ref = out.astype(np.float64), ref.astype(np.float64)
    num = np.sum(out * ref, 1)
    norm_out, norm_ref = np.linalg.norm(out, axis=1), np.linalg.norm(ref, axis=1)
    den = norm_out * norm_ref
    both_zero = (norm_out == 0) & (norm_ref == 0)
    per_sample = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.where(both_zero, 1.0, 0.0))
    return float(np.mean(per_sample))


def score(cand: Candidate, out: np.ndarray, ref: np.ndarray, labels, ref_acc, config: Any,
          gate: Gate = Gate.AUTO) -> None:
    """Measure ``cand``'s outputs ``out`` against FP32's ``ref`` and decide ``passed`` with ``gate``.

    ``Gate.AUTO`` here: accuracy with labels, agreement without (what quantize() did before gates had names).
    """
    cand.agreement = float(np.mean(out.argmax(1) == ref.argmax(1)))
    cand.cosine = cosine(out, ref)
    cand.output_error = round(output_error(out, ref), 6)
    if labels is not None:
        cand.accuracy = float(np.mean(out.argmax(1) == labels))
    if gate is Gate.AUTO:
        gate = Gate.ACCURACY if labels is not None else Gate.AGREEMENT
    if gate is Gate.ACCURACY:
        if labels is None:
            raise InputError("gate accuracy: needs labelled evaluation data (class subfolders or fashion-mnist)")
        kept = cand.accuracy / ref_acc if ref_acc else cand.agreement
        cand.passed = bool(kept >= config.min_accuracy)
    elif gate is Gate.AGREEMENT:
        cand.passed = bool(cand.agreement >= config.min_agreement)
    else:
        cand.passed = bool(cand.output_error <= config.max_output_error)


def choose_gate(requested: Gate, bundle, labelled: bool) -> tuple[Gate, str]:
    """The gate a run uses and why: ``requested`` unless it is AUTO, which reads the data and the provenance.

    AUTO: labelled data gates on accuracy. Without labels, a bundle whose export provenance says the
    weights are not pretrained (a torchvision architecture built offline) gates on output similarity:
    its outputs are near-uniform, so top-1 agreement flips on noise and rejects good INT8 models
    (ResNet-18 with random weights, bench/quantize_gates.py: plain INT8 agrees on 79% of the crops at an
    output error of 0.108). Anything else,
    including unknown provenance, gates on agreement.
    """
    if requested is Gate.ACCURACY and not labelled:
        raise InputError("gate accuracy: needs labelled evaluation data (class subfolders named like the labels, "
                         "or --calibration fashion-mnist); use --gate agreement or similarity")
    if requested is not Gate.AUTO:
        return requested, "asked for"
    if labelled:
        return Gate.ACCURACY, "labelled evaluation data"
    stages = bundle.manifest.provenance
    export = next((s for s in reversed(stages) if s.stage is StageName.EXPORT), None)
    trained = any(s.stage in (StageName.TRAIN, StageName.DISTILL) for s in stages)
    if export is not None and export.params.get("pretrained") is False and not trained:
        source = export.params.get("source") or bundle.name
        return Gate.SIMILARITY, (f"the export provenance says {source} has random weights: top-1 agreement "
                                 "of near-uniform outputs is noise")
    return Gate.AGREEMENT, "unlabelled evaluation data"


def self_agreement(bundle, samples, ref, config) -> Union[float, None]:
    """Top-1 agreement of FP32 with itself when every input value moves by up to half a pixel level.

    The noise floor of the agreement gate: predictions on ambiguous crops flip under noise that small,
    and INT8 rounding cannot be expected to flip fewer.
    """
    pre = bundle.manifest.preprocessing
    if pre is None:
        return None
    amp = 0.5 * pre.scale / max(pre.std)
    rng = np.random.default_rng(config.seed)
    noisy = [x + rng.uniform(-amp, amp, x.shape).astype(np.float32) for x in samples]
    out = outputs(bundle.model_path, noisy, config.threads)
    return float(np.mean(out.argmax(1) == ref.argmax(1)))


def repair(cand, pre, graph, build, config, data, ref, ref_acc, work, say,
           gate: Gate = Gate.AUTO) -> Union[Candidate, None]:
    """Keep the most sensitive nodes float until the accuracy gate passes or the float budget ends.

    Two searches, cheap first:
    1. outlier activations: the tensors INT8 rounding destroys most (lowest per-channel SQNR), 1, 2, 4 of them;
    2. measured impact: the graph cut into 8 contiguous segments, each kept float on its own and ranked by
       what it wins back on a probe subset (agreement; output error under the similarity gate); then the
       best segments are kept float, one more each try.
    Returns the last repaired candidate, scored (None when nothing could be tried).
    """
    budget = int(config.max_float_fraction * len(graph.nodes))
    last = None

    def attempt(nodes: list[str], label: str, excluded: list[dict]) -> Candidate:
        plan = cand.plan.with_excluded(nodes)
        path = work / f"repair-{len(nodes)}-{label}-{cand.path.stem}.onnx"
        build(plan, path)
        fixed = Candidate(f"{cand.name}+float{len(nodes)}", f"{cand.why}; {len(nodes)} sensitive nodes float ({label})",
                          path, plan, excluded=excluded)
        score(fixed, outputs(path, data.evaluation, config.threads), ref, data.labels, ref_acc, config, gate)
        figure = (f"output error {fixed.output_error:.4f}" if gate is Gate.SIMILARITY else
                  f"agreement {fixed.agreement:.4f}")
        say(f"{fixed.name} ({label}): {figure}" + (" passes" if fixed.passed else " still fails"))
        return fixed

    ranked = sensitivities(str(pre), str(cand.path), data.calibration[:8], graph)
    for k in (1, 2, 4):
        if k > len(ranked):
            break
        nodes = graph.unit([n for s in ranked[:k] for n in s.nodes])
        if len(nodes) > budget:
            break
        last = attempt(nodes, "outliers", [{"tensor": s.tensor, "sqnr_db": s.sqnr_db, "nodes": list(s.nodes)}
                                           for s in ranked[:k]])
        if last.passed:
            return last

    order = [n.name for n in graph.nodes]
    size = max(1, -(-len(order) // 8))
    segments = [graph.unit(order[i : i + size]) for i in range(0, len(order), size)]
    probe = list(range(0, len(data.evaluation), max(1, len(data.evaluation) // 150)))
    probe_ref = ref[probe]
    gains = []
    for i, seg in enumerate(segments):
        if len(seg) > budget:
            continue
        path = work / f"segment-{i}-{cand.path.stem}.onnx"
        build(cand.plan.with_excluded(seg), path)
        out = outputs(path, [data.evaluation[j] for j in probe], config.threads)
        if gate is Gate.SIMILARITY:  # higher is better in both: the negated error
            gains.append((-output_error(out, probe_ref), i))
        else:
            gains.append((float(np.mean(out.argmax(1) == probe_ref.argmax(1))), i))
    gains.sort(reverse=True)
    what = "output error" if gate is Gate.SIMILARITY else "agreement"
    say(f"segments kept float one at a time, probe {what}: " + ", ".join(f"#{i} {abs(a):.3f}" for a, i in gains))
    chosen: list[int] = []
    for _, i in gains:
        nodes = graph.unit([n for j in [*chosen, i] for n in segments[j]])
        if len(nodes) > budget:
            break
        chosen.append(i)
        excluded = [{"segment": j, "first": segments[j][0], "last": segments[j][-1], "nodes": segments[j]} for j in chosen]
        last = attempt(nodes, f"segments {','.join(map(str, sorted(chosen)))}", excluded)
        if last.passed:
            break
    return last
