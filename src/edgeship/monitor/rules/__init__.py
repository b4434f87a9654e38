"""The Prometheus alert rules edgeship ships (package data).

>>> from edgeship.monitor.rules import RULES_FILE
>>> RULES_FILE.name
'edgeship-alerts.yml'
"""

from __future__ import annotations

from pathlib import Path

RULES_FILE = Path(__file__).with_name("edgeship-alerts.yml")

__all__ = ["RULES_FILE"]
