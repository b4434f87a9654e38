"""The update agent: poll the repository, fetch what changed, stage, gate, commit or roll back.

>>> agent = Agent(Store("/var/lib/edgeship/store"), AgentConfig("http://repo.local/fleet"), root=root_bytes)
>>> agent.check("mobilenet")          # one poll: 'up to date', 'committed 4', 'rolled back 4: ...'
>>> agent.run(stop_event)             # every 5 minutes +- 10 %, until stop_event is set

Each step persists its state before it acts (``state.py``), so a restart resumes or rolls back
(``recover``). Chunks that an installed version already has are read from its files instead of
downloaded: a head-only update fetches little more than the head.
"""

from __future__ import annotations

import errno
import json
import logging
import random
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..bundle import now_iso
from ..errors import BundleError, InputError
from . import faults
from .client import RepoClient
from .errors import StoreError, TransferError, TrustError, UpdateError
from .gate import CanaryConfig, Gate, GateCrashed, GateFailed, SubprocessGate
from .recipe import Recipe, version_key
from .state import MAX_START_ATTEMPTS, REST, ModelRecord, UpdateState, VersionRef
from .store import Store

log = logging.getLogger("edgeship.ota")
S = UpdateState
CHANNELS = ("stable", "canary")


@dataclass(frozen=True)
class AgentConfig:
    """repo_url: the folder a server publishes REPO/public/ at. models: names to follow (empty: all
    in the store). interval_s / jitter: poll period and its random spread (fleets must not poll in
    step). min_free_bytes: disk to leave free after a download."""

    repo_url: str
    models: tuple[str, ...] = ()
    channel: str = "stable"
    interval_s: float = 300.0
    jitter: float = 0.1
    timeout_s: float = 30.0
    min_free_bytes: int = 16 << 20
    canary: CanaryConfig = field(default_factory=CanaryConfig)

    def __post_init__(self) -> None:
        if self.channel not in CHANNELS:
            raise InputError(f"channel: expected one of {', '.join(CHANNELS)}, got {self.channel!r}")
        if self.interval_s <= 0 or not 0 <= self.jitter < 1:
            raise InputError(f"interval_s must be > 0 and jitter in [0, 1), got {self.interval_s}, {self.jitter}")

    def next_delay(self, rng: random.Random) -> float:
        return self.interval_s * (1 + rng.uniform(-self.jitter, self.jitter))


def _candidate(rec: ModelRecord) -> VersionRef:
    """The version being installed, which every in-flight state from DOWNLOADING on records."""
    if rec.candidate is None:
        raise StoreError(f"{rec.model}: expected a candidate version in state {rec.state.value}, got none")
    return rec.candidate


@dataclass
class Stats:
    bytes_downloaded: int = 0
    bytes_local: int = 0
    chunks_downloaded: int = 0


class Agent:
    def __init__(self, store: Store, config: AgentConfig | None, root: bytes | None = None, gate: Gate | None = None):
        """``config`` None: no repository (recover and roll back only)."""
        self.store = store
        self.config = config
        self.client = RepoClient(store, config.repo_url, root, config.timeout_s) if config else None
        self.gate = gate or SubprocessGate(config.canary if config else None)
        self.stats = Stats()
        self.last_check: dict[str, str] = {}
        self._rng = random.Random()

    def _repo(self) -> tuple[AgentConfig, RepoClient]:
        """The configuration and client of the repository; polling without one is an UpdateError."""
        if self.config is None or self.client is None:
            raise UpdateError("no update repository configured: this agent only recovers and rolls back")
        return self.config, self.client

    def models(self) -> list[str]:
        return list(self.config.models if self.config else ()) or self.store.models()

    # --- the loop --------------------------------------------------------------------------------

    def run(self, stop: threading.Event, first_delay_s: float = 0.0) -> None:
        for name in self.models():
            self.recover(name)
        delay = first_delay_s
        while not stop.wait(delay):
            for name in self.models():
                self.check_logged(name)
            delay = self._repo()[0].next_delay(self._rng)

    def check_logged(self, name: str) -> str:
        try:
            result = self.check(name)
        except UpdateError as exc:
            result = f"check failed: {exc}"
            log.warning(json.dumps({"event": "ota_check", "model": name, "error": str(exc)[:500]}))
        except Exception as exc:  # noqa: BLE001  the agent outlives any one bad update
            result = f"check failed: {type(exc).__name__}: {exc}"
            log.exception("update check of %s failed", name)
        self.last_check[name] = result
        return result

    # --- one check -------------------------------------------------------------------------------

    def check(self, name: str) -> str:
        """Poll once for ``name``; returns what happened in a few words."""
        rec = self.store.record(name)
        if rec.state not in REST:
            return self.recover(name)
        if rec.pinned:
            return f"pinned to {rec.pinned}"
        config, client = self._repo()
        session = client.session()
        rows = client.channel_versions(session, name, config.channel)
        if not rows:
            return f"no versions of {name} on {config.channel}"
        newest = rows[-1]["version"]
        mine = rec.committed.version if rec.committed else None
        if mine is not None and version_key(newest) < version_key(mine):
            log.warning(json.dumps({"event": "ota_refused", "model": name, "offered": newest, "installed": mine,
                                    "reason": "older than installed (rollback attack?)"}))
            return f"refused {newest}: older than the installed {mine}"
        wanted = [r for r in rows if (mine is None or version_key(r["version"]) > version_key(mine))
                  and r["version"] not in rec.failed]
        if not wanted:
            return f"up to date ({mine})"
        version = wanted[-1]["version"]
        recipe, sha, data = client.recipe(session, name, version)
        self.store.save_recipe(sha, data)
        rec = self.store.transition(rec, S.DOWNLOADING, candidate=VersionRef(version, "", sha), attempts=0)
        return self._install(rec, recipe)

    def recover(self, name: str, resume: bool = True) -> str:
        """After a restart: resume an update in flight, or roll it back; never leave no working model.

        ``resume=False`` (a server before it serves) only finishes a commit or a rollback and rolls back
        a candidate that used up its start attempts; the rest resumes later in the agent thread.
        """
        rec = self.store.record(name)
        if rec.state in REST:
            self.store.gc(name)
            return f"at rest ({rec.state.value})"
        quick = rec.state in (S.COMMITTING, S.ROLLING_BACK) or (
            rec.state in (S.SWITCHING, S.CANARY) and rec.attempts >= MAX_START_ATTEMPTS)
        if not resume and not quick:
            return f"{rec.state.value}: resumes when the agent runs"
        if rec.state in (S.DOWNLOADING, S.VERIFYING):
            path = self.store.root / "recipes" / f"{_candidate(rec).recipe}.json"
            if not path.is_file():
                self.store.transition(rec, S.IDLE, reason="recipe missing after restart", candidate=None)
                self.store.gc(name)
                return "aborted: recipe missing"
            return self._install(rec, Recipe.from_json(path.read_bytes(), str(path)))
        if rec.state is S.STAGED:
            return self._gate(rec)
        if rec.state in (S.SWITCHING, S.CANARY):
            if rec.attempts >= MAX_START_ATTEMPTS:
                return self.rollback(rec, f"the candidate stopped the process {rec.attempts} times while loading or "
                                          "in canary")
            return self._gate(rec)
        if rec.state is S.COMMITTING:
            return self._finish_commit(rec, "resumed after restart")
        if rec.state is S.ROLLING_BACK:
            reason = (rec.last_result or {}).get("reason", "resumed after restart")
            return self._finish_rollback(rec, reason)
        raise StoreError(f"{name}: unknown state {rec.state}")

    # --- steps -----------------------------------------------------------------------------------

    def _install(self, rec: ModelRecord, recipe: Recipe) -> str:
        name, version = rec.model, _candidate(rec).version
        try:
            if rec.state is S.DOWNLOADING:
                with faults.step("download"):
                    self._download(rec, recipe)
                with faults.step("after_download"):
                    rec = self.store.transition(rec, S.VERIFYING)
            with faults.step("verify"):
                files = self._assemble(rec, recipe)
            with faults.step("staging"):
                ref = self.store.stage(name, version, _candidate(rec).recipe, files)
                rec = self.store.transition(rec, S.STAGED, candidate=ref)
                self.store.clear_downloads()
        except TransferError:
            raise  # stays in DOWNLOADING; the next check resumes
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
            return self._abort(rec, f"disk full: {exc}")
        except StoreError as exc:
            if "disk full" not in str(exc):
                return self.rollback(self.store.record(rec.model), f"not a valid bundle: {exc}")
            return self._abort(rec, str(exc))
        except TrustError as exc:
            # a chunk that does not match the signed recipe: discarded; the next check fetches it again
            return self._abort(rec, str(exc))
        except BundleError as exc:
            # the signed files do not make a valid bundle of this model and version: the version is bad
            return self.rollback(self.store.record(rec.model), f"not a valid bundle: {exc}")
        return self._gate(rec)

    def _abort(self, rec: ModelRecord, reason: str) -> str:
        self.store.clear_downloads()  # first: on a full disk the state file needs the room
        rec = self.store.record(rec.model)
        version = rec.candidate.version if rec.candidate else ""
        if rec.state in (S.DOWNLOADING, S.VERIFYING):
            try:
                self.store.transition(rec, S.IDLE, reason=reason, candidate=None,
                                      last_result={"result": "aborted", "version": version, "reason": reason,
                                                   "at": now_iso()})
            except OSError as exc:  # still full: the record stays in flight, the committed version serves
                log.warning(json.dumps({"event": "ota_abort", "model": rec.model, "error": str(exc)}))
        self.store.gc(rec.model)
        return f"aborted {version}: {reason}"

    def _free_check(self, need: int) -> None:
        min_free = self.config.min_free_bytes if self.config else AgentConfig.min_free_bytes
        free = shutil.disk_usage(self.store.root).free
        if free - need < min_free:
            raise StoreError(f"disk full: the update needs {need / 1e6:.1f} MB and {free / 1e6:.1f} MB are free "
                             f"(keeping {min_free / 1e6:.0f} MB free)")

    def _download(self, rec: ModelRecord, recipe: Recipe) -> None:
        local = self.store.local_chunks(rec, recipe.chunk_avg)
        downloads = self.store.root / "downloads"
        wanted = {sha: size for sha, size in recipe.chunk_set().items()
                  if sha not in local and not (downloads / f"{sha}.chunk").exists()
                  and not self.store.blob(sha).exists()}
        missing_files = [f for f in recipe.files.values() if not self.store.blob(f.sha256).exists()]
        self._free_check(sum(wanted.values()) + sum(f.size for f in missing_files))
        if not wanted:
            return  # everything is local: no repository needed (a resume after a restart, a Mender agent)
        client = self._repo()[1]
        for sha, size in wanted.items():
            before = client.fetcher.bytes_received
            client.fetcher.download_chunk(client.chunk_url(sha), downloads / f"{sha}.part", size, sha)
            self.stats.bytes_downloaded += client.fetcher.bytes_received - before
            self.stats.chunks_downloaded += 1

    def _assemble(self, rec: ModelRecord, recipe: Recipe) -> dict[str, str]:
        """Build each file from chunks (downloaded or local), check its sha256, move it into blobs/."""
        import hashlib

        local = self.store.local_chunks(rec, recipe.chunk_avg)
        downloads = self.store.root / "downloads"
        out = {}
        for fname, entry in recipe.files.items():
            out[fname] = entry.sha256
            if self.store.blob(entry.sha256).exists():
                continue
            tmp = downloads / f".{entry.sha256}.assemble.tmp"
            h = hashlib.sha256()
            with open(tmp, "wb") as f:
                for c in entry.chunks:
                    data = self._chunk_bytes(c.sha256, c.size, local, downloads)
                    h.update(data)
                    f.write(data)
                    faults.point()
            if h.hexdigest() != entry.sha256:
                tmp.unlink(missing_ok=True)
                raise TrustError(f"{fname}: assembled file has sha256 {h.hexdigest()[:16]}..., "
                                 f"the recipe says {entry.sha256[:16]}...")
            self.store.add_blob(tmp, entry.sha256)
        return out

    def _chunk_bytes(self, sha: str, size: int, local: dict, downloads: Path) -> bytes:
        import hashlib

        done = downloads / f"{sha}.chunk"
        if done.exists():
            data = done.read_bytes()
        elif sha in local:
            path, offset, length = local[sha]
            with open(path, "rb") as f:
                f.seek(offset)
                data = f.read(length)
            self.stats.bytes_local += len(data)
        else:
            raise TransferError(f"chunk {sha[:16]}... is neither downloaded nor local; it is fetched again")
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha:
            done.unlink(missing_ok=True)
            raise TrustError(f"chunk {sha[:16]}... changed on disk since it was checked")
        return data

    def install_bundle(self, bundle_dir: Path, commit: bool = True) -> str:
        """Install a bundle already on disk (a Mender payload) through the same states and gate."""
        from ..bundle import MANIFEST, open_bundle, sha256_file

        bundle = open_bundle(bundle_dir)
        name, version = bundle.manifest.name, bundle.manifest.version
        rec = self.store.record(name)
        if rec.state not in REST:
            raise StoreError(f"{name}: an update is in flight ({rec.state.value}); roll it back first")
        mine = rec.committed.version if rec.committed else None
        if mine is not None and version_key(version) <= version_key(mine):
            raise StoreError(f"{name} {version} is not newer than the installed {mine}; refused (rollback protection)")
        if version in rec.failed:
            raise StoreError(f"{name} {version} failed before ({rec.failed[version]}); publish a newer version")
        sha = sha256_file(bundle.root / MANIFEST)
        rec = self.store.transition(rec, S.DOWNLOADING, reason="local bundle", candidate=VersionRef(version, "", sha),
                                    attempts=0)
        rec = self.store.transition(rec, S.VERIFYING)
        files = self.store.import_bundle_files(bundle.root, [MANIFEST, *bundle.manifest.files])
        ref = self.store.stage(name, version, sha, files)
        rec = self.store.transition(rec, S.STAGED, candidate=ref)
        return self._gate(rec, commit=commit)

    def commit_candidate(self, name: str) -> str:
        rec = self.store.record(name)
        if rec.state is not S.CANARY:
            raise StoreError(f"{name}: nothing to commit: expected state canary, got {rec.state.value}")
        return self._commit(rec, (rec.last_result or {}).get("reason", "committed"))

    def _gate(self, rec: ModelRecord, commit: bool = True) -> str:
        name = rec.model
        cand = self.store.bundle_dir(name, _candidate(rec))
        committed = self.store.bundle_dir(name, rec.committed) if rec.committed else None
        while True:
            rec = self.store.transition(rec, S.SWITCHING, attempts=rec.attempts + 1)
            try:
                with faults.step("switch"):
                    loaded = self.gate.load(name, cand, committed)
                rec = self.store.transition(rec, S.CANARY, reason=loaded)
                with faults.step("canary"):
                    summary = self.gate.canary(name) if committed else "first version: golden check only"
            except GateCrashed as exc:
                if rec.attempts >= MAX_START_ATTEMPTS:
                    return self.rollback(rec, f"{exc}; {rec.attempts} start attempts")
                log.warning(json.dumps({"event": "ota_start_attempt", "model": name, "attempt": rec.attempts,
                                        "error": str(exc)}))
                continue
            except GateFailed as exc:
                return self.rollback(rec, str(exc))
            if not commit:  # Mender commits later (ArtifactCommit)
                self.gate.abort(name)
                self.store.save(rec.replace(last_result={"result": "canary_passed", "version": _candidate(rec).version,
                                                         "reason": summary, "at": now_iso()}))
                return f"canary passed {_candidate(rec).version}: {summary}"
            return self._commit(rec, summary)

    def _commit(self, rec: ModelRecord, summary: str) -> str:
        # the server swaps first: a crash before the record says committing means the old version
        # serves at restart and the candidate gets another start attempt
        try:
            self.gate.commit(rec.model, self.store.bundle_dir(rec.model, _candidate(rec)))
        except Exception as exc:  # noqa: BLE001  e.g. the swap was refused: the old model still serves
            return self.rollback(rec, f"the switch to the candidate failed: {exc}")
        rec = self.store.transition(rec, S.COMMITTING, reason=summary,
                                    last_result={"result": "committing", "version": _candidate(rec).version,
                                                 "reason": summary, "at": now_iso()})
        return self._finish_commit(rec, summary)

    def _finish_commit(self, rec: ModelRecord, summary: str) -> str:
        with faults.step("commit"):
            cand = _candidate(rec)
            self.store.set_current(rec.model, cand)
            rec = self.store.transition(
                rec, S.COMMITTED, reason=summary, committed=cand, previous=rec.committed, candidate=None,
                attempts=0, last_result={"result": "committed", "version": cand.version, "reason": summary,
                                         "at": now_iso()})
            self.store.gc(rec.model)
        return f"committed {cand.version}: {summary}"

    def rollback(self, rec: ModelRecord, reason: str) -> str:
        """Roll back the candidate (or, from a rest state, the committed version to the previous one)."""
        bad = rec.candidate.version if rec.candidate else (rec.committed.version if rec.committed else None)
        changes = {}
        if rec.candidate is None:  # an explicit rollback of the committed version
            if rec.previous is None:
                raise StoreError(f"{rec.model}: no previous version to roll back to")
            changes = {"committed": rec.previous, "previous": None, "candidate": rec.committed}
        rec = self.store.transition(rec, S.ROLLING_BACK, reason=reason, **changes,
                                    last_result={"result": "rolling_back", "version": bad, "reason": reason,
                                                 "at": now_iso()})
        return self._finish_rollback(rec, reason)

    def _finish_rollback(self, rec: ModelRecord, reason: str) -> str:
        bad = rec.candidate.version if rec.candidate else None
        with faults.step("rollback"):
            self.gate.abort(rec.model)
            if rec.committed is not None:
                self.store.set_current(rec.model, rec.committed)
            failed = {**rec.failed, bad: reason[:300]} if bad else rec.failed
            rec = self.store.transition(rec, S.FAILED, reason=reason, candidate=None, failed=failed,
                                        rollbacks=rec.rollbacks + 1, attempts=0,
                                        last_result={"result": "rolled_back", "version": bad, "reason": reason,
                                                     "at": now_iso()})
            self.store.clear_downloads()
            self.store.gc(rec.model)
        return f"rolled back {bad}: {reason}"
