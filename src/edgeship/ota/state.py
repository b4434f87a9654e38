"""The update state machine of one model, persisted in the device store.

>>> rec = ModelRecord("mobilenet")
>>> rec.state
<UpdateState.IDLE: 'idle'>
>>> check_transition(rec, UpdateState.CANARY)
Traceback (most recent call last):
edgeship.ota.errors.StateError: mobilenet: cannot go to canary: expected state switching, got idle

::

    idle/committed/failed ─► downloading ─► verifying ─► staged ─► switching ─► canary ─► committing ─► committed
                               │  ▲              │           │         │           │
                               ▼  └─(restart)────┘           └─────────┴───────────┴──► rolling_back ─► failed
                              idle (aborted: disk full, superseded; the version may be tried again)

``idle``, ``committed`` and ``failed`` are rest states: the committed version serves and nothing is
in flight. ``failed`` marks the last candidate as failed for good (never retried; a newer one is).
A restart in any other state resumes or rolls back (see ``Agent.recover``).
"""

from __future__ import annotations

import dataclasses
import enum
import json
from dataclasses import dataclass, field
from typing import Any, Optional

from .errors import StateError, StoreError


class UpdateState(str, enum.Enum):
    IDLE = "idle"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    STAGED = "staged"
    SWITCHING = "switching"  # the candidate is being loaded and golden-checked (a start attempt)
    CANARY = "canary"
    COMMITTING = "committing"
    COMMITTED = "committed"
    ROLLING_BACK = "rolling_back"
    FAILED = "failed"


S = UpdateState
REST = frozenset({S.IDLE, S.COMMITTED, S.FAILED})
ALLOWED: dict[UpdateState, frozenset[UpdateState]] = {
    S.IDLE: frozenset({S.DOWNLOADING}),
    S.COMMITTED: frozenset({S.DOWNLOADING}),
    S.FAILED: frozenset({S.DOWNLOADING}),
    S.DOWNLOADING: frozenset({S.VERIFYING, S.IDLE}),
    S.VERIFYING: frozenset({S.STAGED, S.DOWNLOADING, S.ROLLING_BACK, S.IDLE}),
    S.STAGED: frozenset({S.SWITCHING, S.ROLLING_BACK}),
    S.SWITCHING: frozenset({S.CANARY, S.SWITCHING, S.ROLLING_BACK}),
    S.CANARY: frozenset({S.COMMITTING, S.SWITCHING, S.ROLLING_BACK}),
    S.COMMITTING: frozenset({S.COMMITTED}),
    S.ROLLING_BACK: frozenset({S.FAILED}),
}
# An explicit rollback (admin API, `mender rollback`) from a rest state goes to the previous version.
ALLOWED[S.COMMITTED] |= {S.ROLLING_BACK}
ALLOWED[S.IDLE] |= {S.ROLLING_BACK}
ALLOWED[S.FAILED] |= {S.ROLLING_BACK}

MAX_START_ATTEMPTS = 3


@dataclass(frozen=True)
class VersionRef:
    """One installed (or being installed) version: its folder under bundles/MODEL/ and its recipe's sha256."""

    version: str
    dir: str = ""
    recipe: str = ""


@dataclass(frozen=True)
class ModelRecord:
    model: str
    state: UpdateState = S.IDLE
    committed: Optional[VersionRef] = None
    previous: Optional[VersionRef] = None
    candidate: Optional[VersionRef] = None
    attempts: int = 0  # start attempts of the candidate (a crash while loading counts)
    failed: dict[str, str] = field(default_factory=dict)  # version -> reason; never retried
    pinned: Optional[str] = None
    rollbacks: int = 0
    last_result: Optional[dict[str, Any]] = None
    updated: str = ""

    def replace(self, **changes: Any) -> "ModelRecord":
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["state"] = self.state.value
        d["schema"] = 1
        return json.dumps(d, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str) -> "ModelRecord":
        try:
            d = json.loads(text)
            d.pop("schema", None)
            for key in ("committed", "previous", "candidate"):
                d[key] = VersionRef(**d[key]) if d.get(key) else None
            d["state"] = UpdateState(d["state"])
            return cls(**d)
        except (ValueError, TypeError, KeyError) as exc:
            raise StoreError(f"{source}: unreadable update state ({exc}); the file was written atomically, "
                             "so it was edited by hand or the disk is failing") from exc


def check_transition(record: ModelRecord, to: UpdateState) -> None:
    allowed_from = sorted(s.value for s, targets in ALLOWED.items() if to in targets)
    if to not in ALLOWED[record.state]:
        raise StateError(f"{record.model}: cannot go to {to.value}: expected state "
                         f"{' or '.join(allowed_from)}, got {record.state.value}")
