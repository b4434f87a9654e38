"""The kill -9 harness, one run per point (the full count, 80 runs or more, is bench/ota_kill9.py)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow


def test_sigkill_at_every_step_leaves_a_working_model(tmp_path):
    from bench.ota_kill9 import POINTS, run_harness

    result = run_harness(1, tmp_path, seed=1)
    assert result["runs"] == len(POINTS) == 8
    assert result["bad"] == 0, [r for r in result["rows"] if not r["ok"]]
    assert all(r["killed"] for r in result["rows"])
    assert {r["serves"] for r in result["rows"] if r["point"] == "rollback"} == {"3"}
