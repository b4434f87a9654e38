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
