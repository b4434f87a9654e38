"""The device's model store: content-addressed files, per model a committed, a previous and at most one candidate.

>>> store = Store("/var/lib/edgeship/store")
>>> with store.lock():
...     ref = store.install_local("mobilenet-v3/")          # a first (factory) version, committed
>>> store.current("mobilenet")                             # the committed bundle folder
PosixPath('/var/lib/edgeship/store/bundles/mobilenet/3-5f1c2a9e')

Layout::

    STORE/
      models/NAME/state.json       the persisted state machine (ModelRecord), replaced atomically
      models/NAME/current          symlink to the committed bundle folder, switched by one rename
      bundles/NAME/VERSION-RECIPE/ a complete bundle: hard links to blobs/
      blobs/SHA256                 every file by content, read-only; shared by versions
      recipes/SHA256.json          the recipe each version was built from (its chunk map)
      downloads/SHA256.part|.chunk chunks being fetched (resumed with HTTP Range)

A blob whose link count is 1 belongs to no bundle and is collected; a bundle folder is collected
only when no record names it (committed, previous and candidate are never deleted), so files in
use stay. Every write goes to a temporary name, is fsynced, then renamed, and the folder fsynced.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from ..bundle import MANIFEST, now_iso, open_bundle, sha256_file
from . import faults
from .errors import StoreError
from .fsutil import fsync_dir, is_temp_name, replace_durable, write_text_durable
from .recipe import check_name
from .state import ModelRecord, UpdateState, VersionRef, check_transition

log = logging.getLogger("edgeship.ota")

Listener = Callable[[ModelRecord, ModelRecord], None]


class Store:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        for sub in ("models", "bundles", "blobs", "recipes", "downloads"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.listeners: list[Listener] = []
        self._lock_file = None

    # --- locking ---------------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self, wait_s: float = 0.0) -> Iterator["Store"]:
        """One updater per store (the agent, a server with --ota, or a Mender module run)."""
        path = self.root / ".lock"
        f = open(path, "a+")
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    f.seek(0)
                    holder = f.read().strip() or "another process"
                    f.close()
                    raise StoreError(f"{self.root}: the store is in use by {holder}; one updater at a time") from None
                time.sleep(0.05)
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}")
        f.flush()
        try:
            yield self
        finally:
            f.close()

    # --- records ---------------------------------------------------------------------------------

    def models(self) -> list[str]:
        return sorted(p.name for p in (self.root / "models").iterdir() if (p / "state.json").is_file())

    def record(self, name: str) -> ModelRecord:
        path = self.root / "models" / check_name(name, "model") / "state.json"
        if not path.is_file():
            return ModelRecord(name)
        return ModelRecord.from_json(path.read_text(), str(path))

    def save(self, record: ModelRecord) -> ModelRecord:
        record = record.replace(updated=now_iso())
        write_text_durable(self.root / "models" / record.model / "state.json", record.to_json())
        return record

    def transition(self, record: ModelRecord, to: UpdateState, reason: str = "", **changes: Any) -> ModelRecord:
        """Check the guard, persist, then log one structured line and tell the listeners (metrics)."""
        check_transition(record, to)
        new = self.save(record.replace(state=to, **changes))
        ref = new.candidate or new.committed
        event = {"event": "ota_transition", "model": new.model, "from": record.state.value, "to": to.value,
                 "version": ref.version if ref else None,
                 "committed": new.committed.version if new.committed else None}
        if reason:
            event["reason"] = reason
        log.info(json.dumps(event, sort_keys=True))
        for listener in self.listeners:
            try:
                listener(record, new)
            except Exception:  # noqa: BLE001  a metrics bug must not break an update
                log.exception("state listener failed")
        return new

    # --- blobs and bundles -----------------------------------------------------------------------

    def blob(self, sha: str) -> Path:
        return self.root / "blobs" / sha

    def add_blob(self, src: Path, sha: str) -> Path:
        """Move a verified file (on this file system) into blobs/ under its sha256, read-only."""
        dest = self.blob(sha)
        if dest.exists():
            src.unlink(missing_ok=True)
            return dest
        with open(src, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(src, 0o444)
        replace_durable(src, dest)
        return dest

    def bundle_dir(self, name: str, ref: VersionRef) -> Path:
        return self.root / "bundles" / name / ref.dir

    def stage(self, name: str, version: str, recipe_sha: str, files: dict[str, str]) -> VersionRef:
        """Make bundles/NAME/VERSION-RECIPE/ from blobs (hard links), verify it, rename it into place."""
        ref = VersionRef(version, f"{version}-{recipe_sha[:12]}", recipe_sha)
        final = self.bundle_dir(name, ref)
        if final.is_dir():
            return ref  # staged before a restart
        parent = final.parent
        parent.mkdir(parents=True, exist_ok=True)
        staging = parent / f".staging-{ref.dir}.{os.getpid()}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            for fname, sha in files.items():
                faults.point()
                os.link(self.blob(sha), staging / fname)
            fsync_dir(staging)
            bundle = open_bundle(staging)  # every sha256 against the manifest
            if bundle.manifest.name != name or bundle.manifest.version != version:
                raise StoreError(f"the bundle inside says {bundle.manifest.name} v{bundle.manifest.version}, "
                                 f"the repository said {name} v{version}")
            replace_durable(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return ref

    def install_local(self, bundle_path: str | os.PathLike, *, force: bool = False) -> VersionRef:
        """Install a bundle (folder or .tar) from disk as the committed version: the factory image."""
        bundle = open_bundle(bundle_path)
        if bundle.is_bare:
            raise StoreError(f"{bundle_path}: a bare model file; install a bundle")
        name = check_name(bundle.manifest.name, "bundle name")
        record = self.record(name)
        if record.committed is not None and not force:
            raise StoreError(f"{name}: version {record.committed.version} is installed already; "
                             "updates come through the agent (or pass --force)")
        files = self.import_bundle_files(bundle.root, [MANIFEST, *bundle.manifest.files])
        recipe_sha = sha256_file(bundle.root / MANIFEST)
        ref = self.stage(name, bundle.manifest.version, recipe_sha, files)
        self.set_current(name, ref)
        record = record.replace(committed=ref, previous=record.committed, candidate=None,
                                state=UpdateState.COMMITTED, attempts=0,
                                last_result={"result": "installed", "version": ref.version, "at": now_iso()})
        self.save(record)
        log.info(json.dumps({"event": "ota_install", "model": name, "version": ref.version}))
        self.gc(name)
        return ref

    def import_bundle_files(self, folder: Path, names: list[str]) -> dict[str, str]:
        """Copy files into blobs/ (temp, fsync, rename); returns name -> sha256."""
        out = {}
        tmp_dir = self.root / "downloads"
        for fname in names:
            sha = sha256_file(folder / fname)
            if not self.blob(sha).exists():
                tmp = tmp_dir / f".import-{sha}.{os.getpid()}.tmp"
                shutil.copyfile(folder / fname, tmp)
                self.add_blob(tmp, sha)
            out[fname] = sha
        return out

    # --- the live pointer ------------------------------------------------------------------------

    def set_current(self, name: str, ref: VersionRef) -> None:
        link = self.root / "models" / name / "current"
        link.parent.mkdir(parents=True, exist_ok=True)
        tmp = link.with_name(f".current.{os.getpid()}.tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(os.path.join("..", "..", "bundles", name, ref.dir), tmp)
        replace_durable(tmp, link)

    def current(self, name: str) -> Path | None:
        link = self.root / "models" / name / "current"
        return link.resolve() if link.is_symlink() and link.resolve().is_dir() else None

    # --- recipes and local chunks ----------------------------------------------------------------

    def save_recipe(self, sha: str, data: bytes) -> Path:
        path = self.root / "recipes" / f"{sha}.json"
        if not path.exists():
            from .fsutil import write_bytes_durable

            write_bytes_durable(path, data)
        return path

    def local_chunks(self, record: ModelRecord, chunk_avg: int = 0) -> dict[str, tuple[Path, int, int]]:
        """sha256 -> (file, offset, size) for every chunk of the installed versions' files.

        A version installed from disk (factory image, Mender) has no recipe: its files are cut here
        with the new recipe's chunk size, which gives the publisher's chunks for the same bytes.
        """
        from .chunking import ChunkParams, chunk_file
        from .recipe import Recipe

        found: dict[str, tuple[Path, int, int]] = {}
        for ref in (record.committed, record.previous):
            if ref is None:
                continue
            path = self.root / "recipes" / f"{ref.recipe}.json"
            if path.is_file():
                recipe = Recipe.from_json(path.read_bytes(), str(path))
                for entry in recipe.files.values():
                    offset = 0
                    for c in entry.chunks:
                        found.setdefault(c.sha256, (self.blob(entry.sha256), offset, c.size))
                        offset += c.size
            elif chunk_avg and self.bundle_dir(record.model, ref).is_dir():
                for f in self.bundle_dir(record.model, ref).iterdir():
                    for piece in chunk_file(f, ChunkParams.around(chunk_avg)):
                        found.setdefault(piece.sha256, (f, piece.offset, piece.size))
        return found

    # --- garbage ---------------------------------------------------------------------------------

    def gc(self, name: str | None = None) -> int:
        """Delete what no record needs: other bundle folders, orphan blobs and recipes, temp files.

        Only in a rest state (the caller holds the lock); returns the number of entries removed.
        """
        removed = 0
        names = [name] if name else self.models()
        keep_recipes: set[str] = set()
        for n in self.models():
            rec = self.record(n)
            keep_recipes |= {r.recipe for r in (rec.committed, rec.previous, rec.candidate) if r}
        for n in names:
            rec = self.record(n)
            keep = {r.dir for r in (rec.committed, rec.previous, rec.candidate) if r}
            folder = self.root / "bundles" / n
            for p in folder.iterdir() if folder.is_dir() else []:
                if p.name not in keep and (rec.state in (UpdateState.IDLE, UpdateState.COMMITTED, UpdateState.FAILED)
                                           or p.name.startswith(".")):
                    faults.point()
                    shutil.rmtree(p, ignore_errors=True)
                    removed += 1
            if rec.candidate is None:
                removed += self.clear_downloads()
        all_rest = all(self.record(n).state in (UpdateState.IDLE, UpdateState.COMMITTED, UpdateState.FAILED)
                       for n in self.models())
        for p in (self.root / "blobs").iterdir():
            # a blob not yet linked into a bundle belongs to an update in flight: kept until it rests
            if is_temp_name(p.name) or (all_rest and p.stat().st_nlink == 1):
                faults.point()
                p.unlink(missing_ok=True)
                removed += 1
        for p in (self.root / "recipes").iterdir():
            if p.name.removesuffix(".json") not in keep_recipes:
                p.unlink(missing_ok=True)
                removed += 1
        for p in (self.root / "models").glob("*/.*.tmp"):
            p.unlink(missing_ok=True)
            removed += 1
        return removed

    def clear_downloads(self) -> int:
        n = 0
        for p in (self.root / "downloads").iterdir():
            p.unlink(missing_ok=True)
            n += 1
        return n

    def partial_files(self) -> list[Path]:
        """Temporary or half-written files outside downloads/ (the kill -9 harness expects none)."""
        out = []
        for sub in ("models", "bundles", "blobs", "recipes"):
            for p in (self.root / sub).rglob("*"):
                if p.name.endswith(".tmp") or p.name.startswith(".staging"):
                    out.append(p)
        return out
