"""The shipped alert rules: valid (`promtool check rules`) and doing what they say (`promtool test rules`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from edgeship.monitor.rules import RULES_FILE

TESTS = Path(__file__).parent / "rules" / "edgeship-alerts.test.yml"


@pytest.fixture
def promtool():
    found = shutil.which("promtool")
    if found is None:
        pytest.skip("promtool not installed (Debian package 'prometheus')")
    return found


def test_rules_file_is_package_data():
    assert RULES_FILE.is_file() and RULES_FILE.suffix == ".yml"


def test_rules_are_valid(promtool):
    done = subprocess.run([promtool, "check", "rules", str(RULES_FILE)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 9 rules found" in done.stdout


def test_rules_pass_their_unit_tests(promtool, tmp_path):
    test = tmp_path / "edgeship-alerts.test.yml"
    test.write_text(TESTS.read_text().replace("RULES_FILE", str(RULES_FILE)))
    done = subprocess.run([promtool, "test", "rules", str(test)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_metric_the_rules_watch_is_one_edgeship_exports():
    """A rule on a name nothing exports never fires (the rollback alert once watched
    edgeship_ota_rollbacks_total while the server counted edgeship_update_rollbacks_total)."""
    import re

    import yaml

    src = Path(__file__).resolve().parents[1] / "src" / "edgeship"
    exported = set()
    for path in src.rglob("*.py"):
        exported |= set(re.findall(r'"(edgeship_[a-z0-9_]+)"', path.read_text(encoding="utf-8")))
    rules = yaml.safe_load(RULES_FILE.read_text())
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    watched = {name for g in rules["groups"] for r in g["rules"]
               for name in re.findall(r"\b(edgeship_[a-z0-9_]+)", r["expr"])}
    suffixes = ("_total", "_bucket", "_count", "_sum", "_created", "_info")

    def known(name: str) -> bool:
        if name in exported or name in recorded:
            return True
        return any(name.endswith(s) and name[: -len(s)] in exported for s in suffixes)

    assert watched and not [n for n in sorted(watched) if not known(n)]
