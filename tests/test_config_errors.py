"""One config error type: every validated frozen dataclass in edgeship rejects a bad field with InputError.

The walk finds every frozen dataclass with a ``__post_init__`` in src/edgeship; each must have a bad-field
case below, so a new config class cannot slip back to ``ValueError`` (or an untranslated enum error).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
from pathlib import Path

import pytest

from edgeship.errors import InputError

SRC = Path(__file__).resolve().parents[1] / "src" / "edgeship"

# "module:Class" -> keyword arguments with one field wrong (the rest valid or defaulted)
BAD = {
    "edgeship.bench.compare:CompareConfig": {"batch": 0},
    "edgeship.bench.config:BenchConfig": {"batches": ()},
    "edgeship.bundle.manifest:TensorSpec": {"name": "input", "shape": [1, 3], "layout": "CHWN"},
    "edgeship.bundle.manifest:Preprocessing": {"color": "CMYK"},
    "edgeship.bundle.manifest:Postprocessing": {"top_k": 0},
    "edgeship.bundle.manifest:Variant": {"name": "int8", "backend": "onnxruntime", "model": "../escape.onnx"},
    "edgeship.bundle.manifest:Stage": {"stage": "bake", "created": "2026-01-01T00:00:00Z"},
    "edgeship.bundle.manifest:Manifest": {"name": "m", "model": "model.onnx", "schema_version": 99},
    "edgeship.llm.bench:LLMBenchConfig": {"repeat": 0},
    "edgeship.llm.chat:ChatConfig": {"max_tokens": 0},
    "edgeship.llm.engine:LoadConfig": {"n_ctx": 2},
    "edgeship.llm.engine:SamplingConfig": {"temperature": 5.0},
    "edgeship.llm.perplexity:PerplexityConfig": {"n_ctx": 4},
    "edgeship.llm.quantize:QuantizeConfig": {"type": "q4"},
    "edgeship.monitor.alerts:AlertThresholds": {"max_cpu_temp_c": -1},
    "edgeship.monitor.governor:Step": {"action": "melt", "set_c": 70.0},
    "edgeship.monitor.governor:GovernorConfig": {"steps": ()},
    "edgeship.monitor.plant:PlantParams": {"ambient_c": 25, "idle_rise_c": 10, "full_rise_c": 5, "tau_s": 60,
                                           "f_max_khz": 2_400_000, "f_min_khz": 1_500_000, "f_step_khz": 100_000,
                                           "soft_c": 80, "hard_c": 85},
    "edgeship.monitor.thermal:ThermalLimits": {"light_c": 60, "moderate_c": 50, "severe_c": 70, "critical_c": 80,
                                               "emergency_c": 90, "shutdown_c": 100},
    "edgeship.optimize.data:DataSpec": {"train_limit": 0},
    "edgeship.optimize.config:DistillConfig": {"batch_size": 0},
    "edgeship.optimize.config:ExportSpec": {"opset": 3},
    "edgeship.optimize.config:PruneConfig": {"ratio": 0.5, "target_flops": 0.5},
    "edgeship.optimize.qconfig:QuantizeConfig": {"method": "median"},
    "edgeship.optimize.recipe:ModelSpec": {"model": ""},
    "edgeship.optimize.recipe:MeasureSpec": {"runs": 0},
    "edgeship.optimize.recipe:Recipe": "recipe",  # built below: it needs a ModelSpec
    "edgeship.optimize.variants:VariantConfig": {"min_agreement": 2.0},
    "edgeship.ota.agent:AgentConfig": {"repo_url": "http://127.0.0.1:1/", "channel": "beta"},
    "edgeship.ota.chunking:ChunkParams": {"min": 10, "avg": 5, "max": 20},
    "edgeship.ota.gate:CanaryConfig": {"shadow_share": 1.5},
    "edgeship.ota.repo:RepoConfig": {"key_type": "rsa"},
    "edgeship.pipeline.config:DescribeConfig": {"max_tokens": 0},
    "edgeship.pipeline.prompt:PromptTemplate": {"system": "hi {label}", "prompt": "{label}"},
    "edgeship.runtime.config:RuntimeConfig": {"backend": "tflite-gpu"},
    "edgeship.serve.config:ServeConfig": {"queue_size": 0},
    "edgeship.targets.catalog:Span": {"low": 2.0, "high": 1.0},
}


def _validated_frozen_dataclasses() -> set[str]:
    """Every frozen dataclass with a __post_init__, found by reading the source (namespace packages too)."""
    found = set()
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        module = ".".join(("edgeship", *path.relative_to(SRC).with_suffix("").parts)).removesuffix(".__init__")
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and any(
                    isinstance(f, ast.FunctionDef) and f.name == "__post_init__" for f in node.body):
                cls = getattr(importlib.import_module(module), node.name)
                if dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen:
                    found.add(f"{module}:{node.name}")
    return found


def test_every_validated_config_has_a_bad_field_case():
    found = _validated_frozen_dataclasses()
    assert found - set(BAD) == set(), "add a bad-field case for these config classes"
    assert set(BAD) - found == set(), "stale cases: these classes are gone or no longer validate"


def test_no_post_init_raises_a_bare_value_error():
    offenders = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name == "__post_init__":
                for r in ast.walk(node):
                    if isinstance(r, ast.Raise) and r.exc is not None and "ValueError" in ast.unparse(r.exc):
                        offenders.append(f"{path.relative_to(SRC)}:{r.lineno}")
    assert offenders == []


@pytest.mark.parametrize("target", sorted(BAD))
def test_bad_field_is_an_input_error(target):
    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    kwargs = BAD[target]
    if kwargs == "recipe":  # a distill section without a teacher
        from edgeship.optimize.distill import DistillConfig
        from edgeship.optimize.recipe import ModelSpec

        kwargs = {"student": ModelSpec(model="fmnist-student"), "distill": DistillConfig()}
    assert inspect.isclass(cls)
    with pytest.raises(InputError) as info:
        cls(**kwargs)
    assert str(info.value), f"{target}: the error says nothing"
