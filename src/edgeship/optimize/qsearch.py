"""One quantize() run, step by step: prepare, build the candidates, time them, pick, confirm.

>>> run = QuantizeRun(bundle, config, work, timer=None, say=print)
>>> run.prepare()                 # pre_process, load_data, choose_gate
>>> run.build_candidates(); run.rank()
>>> chosen, reason = run.choose()

Each step is a method with one job; the state they share (the pre-processed graph, the evaluation
data and FP32's outputs, the candidates, the timer) lives on the run. :func:`.quantize.quantize`
drives them in order and writes the bundle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Union

import numpy as np

from ..errors import QuantizeError
from . import qbuild
from .qconfig import GPU_PROVIDERS, STATIC_LAYOUTS, Gate, Mode, QuantizeConfig, target_format
from .qgate import Candidate, Timer, choose_gate, default_timer, outputs, repair, score, self_agreement, session
from .qlayouts import GraphInfo, Layout, Plan, candidate_plans

MAX_REPAIRS = 2  # candidates the accuracy fallback may repair per run (each costs several builds)
MAX_DROPPED = 4  # candidates refuted by confirmation runs before FP32 is kept


class QuantizeRun:
    """The state and steps of one quantize() run over ``bundle`` in the folder ``work``."""

    def __init__(self, bundle, config: QuantizeConfig, work: Path, timer: Union[Timer, None],
                 say: Callable[[str], None]):
        self.bundle, self.config, self.work, self.say = bundle, config, work, say
        self.fmt = target_format(config.target)
        self.timed_here = self.fmt.on_cpu or (self.fmt.gpu and any(p in _available_providers() for p in GPU_PROVIDERS))
        self.providers = ("CPUExecutionProvider",) if self.fmt.on_cpu else GPU_PROVIDERS + ("CPUExecutionProvider",)
        self._timer = timer
        self.candidates: list[Candidate] = []
        self.order: list[Candidate] = []
        self.calibration: Union[qbuild.Calibration, None] = None
        self.noise_floor: Union[float, None] = None
        self.repairs = 0

    # ------------------------------------------------------------ preparing

    def prepare(self) -> None:
        """The steps before any quantized model exists: pre-process, load the data, choose the gate."""
        self.pre_process()
        self.load_data()
        self.choose_gate()

    def pre_process(self) -> None:
        """ONNX Runtime's pre-processing of the FP32 graph, and the mode (AUTO: from the target and graph)."""
        self.pre = self.work / "pre.onnx"
        self.pre_note = qbuild.pre_process(self.bundle.model_path, self.pre)
        self.graph = GraphInfo.load(self.pre)
        mode = self.config.mode
        if mode is Mode.AUTO:
            mode = Mode.FP16 if self.fmt.gpu else Mode.DYNAMIC if self.graph.matmul_dominated() else Mode.STATIC
        self.mode = mode
        self.say(f"mode {mode.value}; target {self.config.target}: activations {self.fmt.activation}, "
                 f"weights {self.fmt.weight}")

    def load_data(self) -> None:
        """Calibration and evaluation inputs, and FP32's outputs (and accuracy, with labels) on the latter."""
        from .calibration import ArrayReader, load_quant_data

        config, bundle = self.config, self.bundle
        self.data = data = load_quant_data(bundle, config.calibration, config.calibration_samples, config.eval_samples,
                                           config.eval, config.seed)
        input_name = bundle.manifest.inputs[0].name if bundle.manifest.inputs else session(self.pre, 1).get_inputs()[0].name
        self.reader = ArrayReader(input_name, data.calibration)
        self.ref = outputs(bundle.model_path, data.evaluation, config.threads)
        self.fp32 = Candidate("fp32", "the bundle's FP32 model", bundle.model_path, agreement=1.0, cosine=1.0,
                              output_error=0.0, passed=True)
        if data.labels is not None:
            self.fp32.accuracy = float(np.mean(self.ref.argmax(1) == data.labels))

    def choose_gate(self) -> None:
        """The accuracy gate of this run (:func:`.qgate.choose_gate`), said and recorded; agreement's noise floor."""
        config, data = self.config, self.data
        self.gate, why = choose_gate(config.gate, self.bundle, data.labels is not None)
        data.info["gate"] = {"gate": self.gate.value, "why": why, **_thresholds(self.gate, config)}
        against = {Gate.ACCURACY: f"FP32 accuracy {self.fp32.accuracy or 0:.4f}", Gate.AGREEMENT: "agreement with FP32",
                   Gate.SIMILARITY: "output similarity with FP32"}[self.gate]
        self.say(f"evaluation: {len(data.evaluation)} samples, {against}")
        self.say(f"gate: {self.gate.value}, {_describe(self.gate, config)} ({why})")
        if self.gate is Gate.AGREEMENT:
            self.noise_floor = self_agreement(self.bundle, data.evaluation, self.ref, config)
            if self.noise_floor is not None:
                data.info["fp32_self_agreement_half_level_noise"] = self.noise_floor
                self.say(f"FP32 agrees with itself on {self.noise_floor:.4f} of the samples when the input moves "
                         "by half a pixel level")

    # ------------------------------------------------------------ building

    def build(self, plan: Plan, path: Path) -> None:
        qbuild.build(plan, self.pre, path, self.fmt, self.config, self.calibration)

    def calibrate(self) -> None:
        """Static mode: calibrate every quantizable tensor once, for all layouts."""
        self.say(f"calibrating ({self.config.method.value}) on {len(self.data.calibration)} samples")
        self.calibration = qbuild.calibrate(self.pre, self.reader, self.config.method, self.work / "calibration.json",
                                            self.work)
        self.data.info["calibration"] = self.calibration.info()
        note = self.calibration.note()
        if note:
            self.say(note)

    def build_candidates(self) -> None:
        """Every layout the mode allows and the graph has, built; a layout ORT rejects is skipped."""
        if self.mode is Mode.FP16:
            path = self.work / "fp16.onnx"
            qbuild.build_fp16(self.pre, path)
            self.candidates.append(Candidate("fp16", "FP16 weights and activations, float32 inputs/outputs", path))
            return
        dynamic = self.mode is Mode.DYNAMIC
        layouts = self.config.layouts or ([Layout.DYNAMIC] if dynamic else STATIC_LAYOUTS)
        plans = candidate_plans(self.graph, [lay for lay in layouts if (lay is Layout.DYNAMIC) == dynamic])
        if not plans:
            raise QuantizeError(f"{self.bundle.name}: no {self.mode.value} layout applies to this graph "
                                f"({self.graph.op_counts()})")
        if not dynamic:
            self.calibrate()
        for i, plan in enumerate(plans):
            path = self.work / f"cand{i}-{plan.name}.onnx"
            try:
                self.build(plan, path)
            except QuantizeError as exc:  # one layout the quantizer rejects does not stop the others
                self.say(f"skipped: {exc}")
                continue
            self.candidates.append(Candidate(f"int8:{plan.name}", plan.why, path, plan))
        if not self.candidates:
            raise QuantizeError(f"{self.bundle.name}: onnxruntime could not quantize any layout of this model")
        self.say(f"built {len(self.candidates)} layouts: {', '.join(c.name for c in self.candidates)}")

    # ------------------------------------------------------------ timing

    @property
    def timer(self) -> Timer:
        if self._timer is None:
            self._timer = default_timer(self.config.threads, self.config.timing_runs, self.data.evaluation[0],
                                        self.providers)
        return self._timer

    def time_against_fp32(self, cands: list[Candidate]) -> None:
        """Time ``cands`` side by side with FP32; sets their (and FP32's) p50/p95 and speedup."""
        times = self.timer({"fp32": self.bundle.model_path, **{c.name: c.path for c in cands}})
        self.fp32.p50_ms, self.fp32.p95_ms = times["fp32"]
        for c in cands:
            c.p50_ms, c.p95_ms = times[c.name]
            c.speedup = round(self.fp32.p50_ms / c.p50_ms, 3) if c.p50_ms else None

    def rank(self) -> None:
        """Order the candidates fastest first (in building order when the target cannot be timed here)."""
        if not self.timed_here:
            self.order = list(self.candidates)
            return
        self.time_against_fp32(self.candidates)
        self.order = sorted(self.candidates, key=lambda c: -(c.speedup or 0))
        self.say("timed: " + ", ".join(f"{c.name} {c.speedup:.2f}x" for c in self.order))

    # ------------------------------------------------------------ choosing

    def evaluate(self, c: Candidate) -> None:
        score(c, outputs(c.path, self.data.evaluation, self.config.threads), self.ref, self.data.labels,
              self.fp32.accuracy, self.config, self.gate)
        figures = (f"output error {c.output_error:.4f} (agreement {c.agreement:.4f})" if self.gate is Gate.SIMILARITY
                   else f"agreement {c.agreement:.4f}" + (f", accuracy {c.accuracy:.4f}" if c.accuracy is not None else ""))
        self.say(f"{c.name}: {figures}" + (" passes" if c.passed else f" fails the {self.gate.value} gate"))

    def _may_repair(self, c: Candidate) -> bool:
        return (c.plan is not None and not c.plan.dynamic and self.repairs < MAX_REPAIRS
                and self.config.max_float_fraction > 0)

    def _repair(self, c: Candidate) -> Union[Candidate, None]:
        """``c`` with its most sensitive nodes float, if that passes the gate and stays fast enough."""
        self.repairs += 1
        self.say(f"{c.name}: looking for the most sensitive activations")
        fixed = repair(c, self.pre, self.graph, self.build, self.config, self.data, self.ref, self.fp32.accuracy,
                       self.work, self.say, self.gate)
        if fixed is None:
            return None
        self.candidates.append(fixed)
        if not fixed.passed:
            return None
        if self.timed_here:
            self.time_against_fp32([fixed])
            if (fixed.speedup or 0) < self.config.min_speedup:
                return None
        return fixed

    def pick(self, skip: set[str], may_repair: bool = True) -> Union[Candidate, None]:
        """The fastest candidate not in ``skip`` that passes the gate (repairing up to two that fail)."""
        for c in [c for c in self.order if c.name not in skip]:
            if self.timed_here and (c.speedup or 0) < self.config.min_speedup:
                return None
            if c.passed is None:
                self.evaluate(c)
            if c.passed:
                return c
            if may_repair and self._may_repair(c):
                fixed = self._repair(c)
                if fixed is not None:
                    return fixed
        return None

    def choose(self) -> tuple[Union[Candidate, None], str]:
        """The candidate to ship (None: FP32) and why, after a fresh confirmation run of the winner.

        One noisy selection run must not decide. The winner is re-timed against FP32 together with the
        runner-up that also passes the gate (layouts within a few percent of each other swap places from
        run to run), and the faster of the two is kept. When neither is faster than FP32 they are dropped
        and the next ones are confirmed.
        """
        chosen = self.pick(set())
        dropped: set[str] = set()
        refuted: list[str] = []
        reason = ""
        while chosen is not None and self.timed_here:
            runner_up = self.pick(dropped | {chosen.name}, may_repair=False)
            contenders = [chosen] + ([runner_up] if runner_up is not None else [])
            first = {c.name: c.speedup for c in contenders}
            self.time_against_fp32(contenders)
            self.say("confirmation: " + ", ".join(f"{c.name} {c.speedup:.2f}x (selection run {first[c.name]:.2f}x)"
                                                 for c in contenders))
            chosen = max(contenders, key=_speed)
            if (chosen.speedup or 0) >= 1.0:
                reason = f"{chosen.name} is {chosen.speedup:.2f}x FP32 on this host and keeps the {self.gate.value} gate"
                break
            for c in contenders:
                dropped.add(c.name)
                refuted.append(f"{c.name} measured {first[c.name]:.2f}x when selected but {c.speedup:.2f}x when confirmed")
            chosen = self.pick(dropped) if len(dropped) < MAX_DROPPED else None
        if refuted:
            reason = (reason + " after " if chosen else "keeping FP32 (never slower than FP32): ") + "; ".join(refuted)
        elif chosen is not None and not self.timed_here:
            reason = f"{chosen.name} keeps the {self.gate.value} gate; not timed here: the target runs on {self.providers[0]}"
        elif chosen is None:
            reason = self.fp32_reason()
        self.say(reason)
        return chosen, reason

    def fp32_reason(self) -> str:
        """Why no quantized model was chosen, with the figures that decided it."""
        config, graph = self.config, self.graph
        fast = [c for c in self.candidates if c.speedup is not None and c.speedup >= config.min_speedup]
        best = max((c for c in self.candidates if c.speedup is not None), key=_speed, default=None)
        if self.timed_here and not fast and best is not None:
            depthwise_se = bool(graph.se_nodes() or graph.hard_activation_nodes()) and any(
                graph.is_depthwise(n) for n in graph.nodes)
            why = ("; on depthwise/SE/hard-swish graphs ORT's INT8 elementwise work (QLinearMul, QLinearSigmoid, "
                   "Q/DQ around HardSigmoid) and INT8 depthwise convs cost more than the INT8 1x1 convs save "
                   "(ORT profiles of MobileNetV3-Small and EfficientNet-B0 on a 2-core AVX2 host)" if depthwise_se else "")
            return (f"keeping FP32: no quantized layout is faster on this host (best {best.name} at {best.speedup:.2f}x "
                    f"of FP32, needs {config.min_speedup:.2f}x){why}")
        failed = [c for c in self.candidates if c.passed is False]
        if failed and self.gate is Gate.SIMILARITY:
            worst = ", ".join(f"{c.name} output error {c.output_error:.3f}" for c in failed[:4])
            return (f"keeping FP32: every fast enough layout fails the similarity gate ({worst}; needs at most "
                    f"{config.max_output_error})")
        if failed:
            worst = ", ".join(f"{c.name} agreement {c.agreement:.3f}" for c in failed[:4])
            floor = (f"; FP32 itself agrees only {self.noise_floor:.3f} with itself under half-a-pixel-level input "
                     "noise, so these samples are near ties"
                     if self.noise_floor is not None and self.noise_floor < config.min_agreement else "")
            return (f"keeping FP32: every fast enough layout fails the accuracy gate ({worst}; needs "
                    f"{config.min_accuracy} of FP32 accuracy with labels, {config.min_agreement} agreement without{floor})")
        return "keeping FP32: no quantized model passed both gates"

    def info(self) -> dict[str, Any]:
        """The run's data record for the result and the provenance."""
        fmt = self.fmt
        return {**self.data.info, "pre_process": self.pre_note, "target": self.config.target,
                "format": {"activation": fmt.activation, "weight": fmt.weight,
                           "symmetric_activations": fmt.symmetric_activations, "why": fmt.why},
                "timed_on": "this host" if self.timed_here else None}


def _speed(c: Candidate) -> float:
    return c.speedup or 0.0


def _describe(gate: Gate, config: QuantizeConfig) -> str:
    return {Gate.ACCURACY: f"keeps at least {config.min_accuracy} of FP32's accuracy",
            Gate.AGREEMENT: f"top-1 agreement with FP32 at least {config.min_agreement}",
            Gate.SIMILARITY: f"output error against FP32 at most {config.max_output_error}"}[gate]


def _thresholds(gate: Gate, config: QuantizeConfig) -> dict[str, float]:
    return {Gate.ACCURACY: {"min_accuracy": config.min_accuracy}, Gate.AGREEMENT: {"min_agreement": config.min_agreement},
            Gate.SIMILARITY: {"max_output_error": config.max_output_error}}[gate]


def _available_providers() -> list[str]:
    from ..runtime.session import available_providers

    return available_providers()


__all__ = ["QuantizeRun"]
