"""The publisher: a TUF repository of model versions, plain static files any HTTP server can serve.

>>> repo = init_repo("fleet-repo", RepoConfig(key_type="ed25519"))
>>> repo.publish("mobilenet-v4/", channel="canary")          # a bundle folder or .tar
PublishResult(model='mobilenet', version='4', channel='canary', new_bytes=312448, total_bytes=18734112, ...)

Layout (serve ``public/``; ``keys/`` never leaves the publishing machine)::

    REPO/
      repo.json                     expiry periods, key type, chunk size
      keys/ (0700)                  root.pem targets.pem snapshot.pem timestamp.pem (PKCS#8, 0600)
      public/
        metadata/                   1.root.json  N.targets.json  N.snapshot.json  timestamp.json
        targets/MODEL/channels/     HASH.stable.json  HASH.canary.json   (the versions of a channel)
        targets/MODEL/VERSION/      HASH.recipe.json                      (files -> chunks)
        chunks/AB/SHA256            content-defined chunks of every file, shared by all versions

Every publish writes new files only (names carry their hash or version), then replaces
``timestamp.json`` last: a device reading the repository mid-publish sees the old state or the new
one. Snapshot pins targets, and timestamp pins snapshot, by version, length and sha256, so a
snapshot and a targets file that were never published together do not verify (mix-and-match).
"""

from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator

from .._deps import require
from ..bundle import Bundle, open_bundle
from .chunking import ChunkParams, chunk_file
from .errors import PublishError
from .fsutil import write_bytes_durable, write_text_durable
from .recipe import ChunkRef, FileEntry, Recipe, check_name, version_key

ROLES = ("root", "targets", "snapshot", "timestamp")
CHANNELS = ("stable", "canary")
KEY_TYPES = ("ed25519", "ecdsa")


@dataclass(frozen=True)
class RepoConfig:
    """How a repository signs and cuts. Expiry periods in days (fractions allowed).

    timestamp_expiry_days: how long a device accepts the repository's state without a new
      timestamp; past it the device refuses (a freeze attack looks exactly like this), so run
      ``edgeship ota refresh REPO`` more often than this (e.g. daily from cron).
    """

    key_type: str = "ed25519"
    root_expiry_days: float = 365.0
    targets_expiry_days: float = 90.0
    snapshot_expiry_days: float = 30.0
    timestamp_expiry_days: float = 7.0
    chunk_kib: int = 64

    def __post_init__(self) -> None:
        if self.key_type not in KEY_TYPES:
            raise PublishError(f"key_type: expected one of {', '.join(KEY_TYPES)}, got {self.key_type!r}")
        for role in ROLES:
            v = getattr(self, f"{role}_expiry_days")
            if not isinstance(v, (int, float)) or v <= 0:
                raise PublishError(f"{role}_expiry_days: expected a positive number of days, got {v!r}")
        if not isinstance(self.chunk_kib, int) or not 4 <= self.chunk_kib <= 16384:
            raise PublishError(f"chunk_kib: expected an integer from 4 to 16384, got {self.chunk_kib!r}")

    def expiry(self, role: str) -> _dt.datetime:
        days = getattr(self, f"{role}_expiry_days")
        return (_dt.datetime.now(_dt.timezone.utc) + _dt.timedelta(days=days)).replace(microsecond=0)


@dataclass(frozen=True)
class PublishResult:
    model: str
    version: str
    channel: str
    new_bytes: int  # chunk bytes this publish added to the repository
    total_bytes: int  # the bundle's bytes
    new_chunks: int
    total_chunks: int
    recipe: str  # target path
    targets_version: int


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _tuf():
    require("tuf", "ota", "the OTA repository (python-tuf)")
    from tuf.api import metadata

    return metadata


def _write_new_private_key(path: Path, pem: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())


def _serializer():
    from tuf.api.serialization.json import JSONSerializer

    return JSONSerializer(compact=False)


def init_repo(path: str | os.PathLike, config: RepoConfig | None = None) -> "Repository":
    """Create keys and the first signed metadata (empty targets) in a new folder ``path``."""
    config = config or RepoConfig()
    md = _tuf()
    from securesystemslib.signer import CryptoSigner

    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise PublishError(f"{path}: exists and is not empty; give a new folder for the repository")
    keys = path / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    os.chmod(keys, 0o700)
    signers = {}
    for role in ROLES:
        signer = CryptoSigner.generate_ed25519() if config.key_type == "ed25519" else CryptoSigner.generate_ecdsa()
        _write_new_private_key(keys / f"{role}.pem", signer.private_bytes)
        signers[role] = signer
    root = md.Root(expires=config.expiry("root"), consistent_snapshot=True)
    for role in ROLES:
        root.add_key(signers[role].public_key, role)
    meta_dir = path / "public" / "metadata"
    meta_dir.mkdir(parents=True, exist_ok=True)
    (path / "public" / "targets").mkdir(exist_ok=True)
    (path / "public" / "chunks").mkdir(exist_ok=True)
    root_md = md.Metadata(root)
    root_md.sign(signers["root"])
    data = root_md.to_bytes(_serializer())
    write_bytes_durable(meta_dir / "1.root.json", data)
    write_bytes_durable(meta_dir / "root.json", data)  # the trust anchor to copy onto devices
    write_text_durable(path / "repo.json", json.dumps(asdict(config), indent=2) + "\n")
    repo = Repository(path)
    targets = md.Metadata(md.Targets(expires=config.expiry("targets")))
    with repo._lock():
        repo._sign_and_write(targets, signers)
    return repo


class Repository:
    """An existing repository folder (made by ``init_repo``)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        cfg = self.path / "repo.json"
        if not cfg.is_file():
            raise PublishError(f"{self.path}: not an edgeship OTA repository (no repo.json); run `edgeship ota init`")
        try:
            self.config = RepoConfig(**json.loads(cfg.read_text()))
        except (ValueError, TypeError) as exc:
            raise PublishError(f"{cfg}: unreadable ({exc})") from exc
        self.public = self.path / "public"
        self.meta_dir = self.public / "metadata"

    @property
    def root_file(self) -> Path:
        return self.meta_dir / "root.json"

    # --- keys and metadata --------------------------------------------------------------------

    def _root(self):
        md = _tuf()
        versions = sorted(int(p.name.split(".")[0]) for p in self.meta_dir.glob("*.root.json"))
        return md.Metadata.from_file(str(self.meta_dir / f"{versions[-1]}.root.json"))

    def _signers(self) -> dict:
        from cryptography.hazmat.primitives.serialization import load_pem_private_key
        from securesystemslib.signer import CryptoSigner

        root = self._root().signed
        signers = {}
        for role in ROLES:
            key = root.get_key(root.roles[role].keyids[0])
            pem_path = self.path / "keys" / f"{role}.pem"
            try:
                private = load_pem_private_key(pem_path.read_bytes(), None)
                signers[role] = CryptoSigner(private, key)
            except (OSError, ValueError) as exc:
                raise PublishError(f"{pem_path}: cannot load the {role} key ({exc})") from exc
        return signers

    def load(self, role: str):
        """The current signed metadata of ``role`` ("timestamp", "snapshot" or "targets")."""
        md = _tuf()
        ts = md.Metadata.from_file(str(self.meta_dir / "timestamp.json"))
        if role == "timestamp":
            return ts
        snap = md.Metadata.from_file(str(self.meta_dir / f"{ts.signed.snapshot_meta.version}.snapshot.json"))
        if role == "snapshot":
            return snap
        return md.Metadata.from_file(str(self.meta_dir / f"{snap.signed.meta['targets.json'].version}.targets.json"))

    def _sign_and_write(self, targets, signers: dict, expire_all: bool = True) -> None:
        """Write targets (already updated, version bumped by the caller), then snapshot, then timestamp."""
        md = _tuf()
        ser = _serializer()
        targets.signed.expires = self.config.expiry("targets")
        targets.signatures.clear()
        targets.sign(signers["targets"])
        tdata = targets.to_bytes(ser)
        write_bytes_durable(self.meta_dir / f"{targets.signed.version}.targets.json", tdata)
        first = not (self.meta_dir / "timestamp.json").exists()
        version = 1 if first else self.load("snapshot").signed.version + 1
        snap = md.Snapshot(version=version, expires=self.config.expiry("snapshot"))
        snap.meta["targets.json"] = md.MetaFile.from_data(targets.signed.version, tdata, ["sha256"])
        self._write_timestamp(md.Metadata(snap), signers)

    def _write_timestamp(self, snapshot, signers: dict) -> None:
        md = _tuf()
        ser = _serializer()
        snapshot.signatures.clear()
        snapshot.sign(signers["snapshot"])
        sdata = snapshot.to_bytes(ser)
        write_bytes_durable(self.meta_dir / f"{snapshot.signed.version}.snapshot.json", sdata)
        first = not (self.meta_dir / "timestamp.json").exists()
        ts_version = 1 if first else self.load("timestamp").signed.version + 1
        ts = md.Timestamp(version=ts_version, expires=self.config.expiry("timestamp"),
                          snapshot_meta=md.MetaFile.from_data(snapshot.signed.version, sdata, ["sha256"]))
        ts_md = md.Metadata(ts)
        ts_md.sign(signers["timestamp"])
        write_bytes_durable(self.meta_dir / "timestamp.json", ts_md.to_bytes(ser))  # the commit point

    def _lock(self):
        import contextlib

        @contextlib.contextmanager
        def held() -> Iterator[None]:
            with open(self.path / ".lock", "w") as f:
                fcntl.flock(f, fcntl.LOCK_EX)
                yield

        return held()

    # --- what is published -------------------------------------------------------------------

    def versions(self, model: str | None = None) -> list[dict[str, Any]]:
        """Every published version (optionally of one model), oldest first."""
        rows = []
        for path, target in self.load("targets").signed.targets.items():
            info = (target.unrecognized_fields.get("custom") or {}).get("edgeship")
            if info and path.endswith("/recipe.json") and (model is None or info["model"] == model):
                rows.append({**info, "recipe": path, "length": target.length})
        return sorted(rows, key=lambda r: (r["model"], version_key(r["version"])))

    def _write_target(self, targets, target_path: str, data: bytes, custom: dict | None = None) -> None:
        md = _tuf()
        info = md.TargetFile.from_data(target_path, data, ["sha256"])
        if custom is not None:
            info.unrecognized_fields["custom"] = custom
        dirname, _, base = target_path.rpartition("/")
        write_bytes_durable(self.public / "targets" / dirname / f"{info.hashes['sha256']}.{base}", data)
        targets.signed.targets[target_path] = info

    def _channel_docs(self, targets, model: str) -> None:
        rows = []
        for path, t in targets.signed.targets.items():
            info = (t.unrecognized_fields.get("custom") or {}).get("edgeship")
            if info and info["model"] == model and path.endswith("/recipe.json"):
                rows.append({"version": info["version"], "channel": info["channel"], "recipe": path,
                             "published": info["published"], "bytes": info["bytes"]})
        rows.sort(key=lambda r: version_key(r["version"]))
        for channel in CHANNELS:
            # a canary device takes stable versions too; a stable one only stable versions
            chosen = [r for r in rows if channel == "canary" or r["channel"] == "stable"]
            doc = {"schema": 1, "model": model, "channel": channel, "versions": chosen}
            self._write_target(targets, f"{model}/channels/{channel}.json",
                               (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode())

    def _store_chunks(self, bundle: Bundle, params: ChunkParams) -> tuple[dict[str, FileEntry], int, int]:
        files: dict[str, FileEntry] = {}
        new_bytes = new_chunks = 0
        names = ["edgeship.json", *sorted(bundle.manifest.files)]
        for name in names:
            path = bundle.root / name
            chunks = chunk_file(path, params)
            with open(path, "rb") as f:
                for c in chunks:
                    dest = self.public / "chunks" / c.sha256[:2] / c.sha256
                    if dest.exists():
                        f.seek(c.offset + c.size)
                        continue
                    f.seek(c.offset)
                    write_bytes_durable(dest, f.read(c.size))
                    new_bytes += c.size
                    new_chunks += 1
            from ..bundle import sha256_file

            files[name] = FileEntry(sha256_file(path), path.stat().st_size,
                                    tuple(ChunkRef(c.sha256, c.size) for c in chunks))
        return files, new_bytes, new_chunks

    def publish(self, bundle_path: str | os.PathLike, channel: str = "stable") -> PublishResult:
        """Add a bundle as a new version of its model on ``channel`` and re-sign.

        Publishing a version that is already there with the same content moves it to ``channel``
        (promote canary -> stable); with other content it is refused: bump the manifest's version.
        """
        if channel not in CHANNELS:
            raise PublishError(f"channel: expected one of {', '.join(CHANNELS)}, got {channel!r}")
        bundle = open_bundle(bundle_path)  # verifies every sha256
        if bundle.is_bare:
            raise PublishError(f"{bundle_path}: a bare model file; publish a bundle (edgeship bundle / export)")
        m = bundle.manifest
        try:
            check_name(m.name, "bundle name")
            version_key(m.version)
        except ValueError as exc:
            raise PublishError(f"{bundle_path}: {exc}") from None
        params = ChunkParams.around(self.config.chunk_kib * 1024)
        with self._lock():
            signers = self._signers()
            targets = self.load("targets")
            recipe_path = f"{m.name}/{m.version}/recipe.json"
            existing = self.versions(m.name)
            files, new_bytes, new_chunks = self._store_chunks(bundle, params)
            same = [r for r in existing if r["version"] == m.version]
            if same:
                old = targets.signed.targets[recipe_path]
                old_recipe = Recipe.from_json(self._target_bytes(recipe_path, old.hashes["sha256"]))
                if {n: f.sha256 for n, f in old_recipe.files.items()} != {n: f.sha256 for n, f in files.items()}:
                    raise PublishError(
                        f"{m.name} version {m.version} is already published with other content; "
                        "give the new bundle a higher version (manifest 'version')")
                old.unrecognized_fields["custom"]["edgeship"]["channel"] = channel
                recipe = old_recipe
            else:
                newest = existing[-1]["version"] if existing else None
                if newest is not None and version_key(m.version) <= version_key(newest):
                    raise PublishError(f"{m.name} version {m.version} is not newer than the published {newest}; "
                                       "a device never installs an older version (rollback protection)")
                recipe = Recipe(m.name, m.version, files, _now(), params.avg)
                custom = {"edgeship": {"model": m.name, "version": m.version, "channel": channel,
                                       "published": recipe.published, "bytes": recipe.total_bytes}}
                self._write_target(targets, recipe_path, recipe.to_json().encode(), custom)
            self._channel_docs(targets, m.name)
            targets.signed.version += 1
            self._sign_and_write(targets, signers)
        total_chunks = sum(len(f.chunks) for f in files.values())
        return PublishResult(m.name, m.version, channel, new_bytes, recipe.total_bytes, new_chunks, total_chunks,
                             recipe_path, targets.signed.version)

    def _target_bytes(self, target_path: str, sha: str) -> bytes:
        dirname, _, base = target_path.rpartition("/")
        return (self.public / "targets" / dirname / f"{sha}.{base}").read_bytes()

    def refresh(self, expires: _dt.datetime | None = None) -> int:
        """Re-sign timestamp (new version, new expiry; ``expires`` overrides the configured period)."""
        md = _tuf()
        with self._lock():
            signers = self._signers()
            old = self.load("timestamp").signed
            ts = md.Timestamp(version=old.version + 1, expires=expires or self.config.expiry("timestamp"),
                              snapshot_meta=old.snapshot_meta)
            ts_md = md.Metadata(ts)
            ts_md.sign(signers["timestamp"])
            write_bytes_durable(self.meta_dir / "timestamp.json", ts_md.to_bytes(_serializer()))
            return ts.version


def open_repo(path: str | os.PathLike) -> Repository:
    return Repository(path)
