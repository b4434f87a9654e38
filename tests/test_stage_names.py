"""Provenance stage names are one enum (StageName); edgeship.json keeps the plain strings."""

from __future__ import annotations

import json

import pytest

from edgeship.bundle import Manifest, Stage, StageName
from edgeship.errors import SchemaError


def test_stage_names_are_enum_members_and_json_keeps_the_strings():
    row = Stage("quantize", "2024-01-01T00:00:00Z", "edgeship", {"method": "minmax"})
    assert row.stage is StageName.QUANTIZE and row.stage == "quantize"
    manifest = Manifest(name="m", model="model.onnx", provenance=[Stage(StageName.EXPORT, "t"), row])
    data = json.loads(manifest.to_json())
    assert [r["stage"] for r in data["provenance"]] == ["export", "quantize"]
    again = Manifest.from_json(manifest.to_json())
    assert [r.stage for r in again.provenance] == [StageName.EXPORT, StageName.QUANTIZE]


def test_an_unknown_stage_name_is_refused_and_named():
    with pytest.raises(ValueError, match=r"stage: expected one of 'train', .*got 'quantise'"):
        Stage("quantise", "t")
    text = Manifest(name="m", model="model.onnx", provenance=[Stage("export", "t")]).to_json()
    with pytest.raises(SchemaError, match="provenance.*'export', 'quantize'.*'compile'"):
        Manifest.from_json(text.replace('"stage": "export"', '"stage": "compile"'))
