"""The device side of TUF: refresh signed metadata, read a channel, fetch a recipe; nothing unverified.

>>> client = RepoClient(store, "http://repo.local/fleet", root=Path("root.json").read_bytes())
>>> session = client.session()                    # timestamp -> snapshot -> targets, all checked
>>> client.channel_versions(session, "mobilenet", "stable")[-1]["version"]
'4'
>>> recipe, sha, data = client.recipe(session, "mobilenet", "4")

python-tuf's ``Updater`` does the verifying (signatures by the keys in the trusted root, version
numbers never going back, expiry, snapshot/targets consistency, length and hash of each target);
its exceptions become TrustError or TransferError here with what they mean for the user.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .._deps import require
from .errors import TransferError, TrustError
from .fetch import HttpFetcher
from .recipe import Recipe, version_key
from .store import Store

require("tuf", "ota", "the OTA agent (python-tuf)")
from tuf.api import exceptions as tuf_exc  # noqa: E402
from tuf.ngclient import Updater, UpdaterConfig  # noqa: E402

TRUSTED_ROOT = "trusted-root.json"
MAX_SMALL_TARGET = 8 << 20  # a channel document or a recipe; more is refused before it is read


def _translate(exc: Exception, what: str) -> Exception:
    if isinstance(exc, tuf_exc.ExpiredMetadataError):
        return TrustError(f"{what}: the repository's signed metadata has expired ({exc}); this is what a freeze "
                          "attack looks like, or the publisher stopped running `edgeship ota refresh`")
    if isinstance(exc, (tuf_exc.BadVersionNumberError, tuf_exc.EqualVersionNumberError)):
        return TrustError(f"{what}: the repository offers older metadata than the device has seen ({exc}): "
                          "refused as a rollback attack")
    if isinstance(exc, tuf_exc.UnsignedMetadataError):
        return TrustError(f"{what}: metadata not signed by the keys the device trusts ({exc})")
    if isinstance(exc, (tuf_exc.LengthOrHashMismatchError, tuf_exc.DownloadLengthMismatchError)):
        return TrustError(f"{what}: a file does not match its signed length or sha256 ({exc})")
    if isinstance(exc, tuf_exc.DownloadError):
        return TransferError(f"{what}: the repository could not be read ({exc})")
    if isinstance(exc, tuf_exc.RepositoryError):
        return TrustError(f"{what}: the repository's metadata failed verification ({type(exc).__name__}: {exc})")
    return exc


class RepoClient:
    def __init__(self, store: Store, repo_url: str, root: bytes | None = None, timeout_s: float = 30.0):
        self.store = store
        self.base = repo_url.rstrip("/")
        self.dir = store.root / "tuf"
        self.dir.mkdir(exist_ok=True)
        anchor = self.dir / TRUSTED_ROOT
        if root is not None and not anchor.exists():
            from .fsutil import write_bytes_durable

            write_bytes_durable(anchor, root)
        if not anchor.exists():
            raise TrustError(f"{self.store.root}: no trusted root yet; give the repository's root.json "
                             "(--root, copied from REPO/public/metadata/root.json) the first time")
        self.fetcher = HttpFetcher(timeout_s)

    def chunk_url(self, sha: str) -> str:
        return f"{self.base}/chunks/{sha[:2]}/{sha}"

    def session(self) -> Updater:
        """A refreshed TUF updater (one per check: ngclient refreshes once per instance)."""
        updater = Updater(str(self.dir), f"{self.base}/metadata/", None, f"{self.base}/targets/",
                          fetcher=self.fetcher, config=UpdaterConfig(),
                          bootstrap=(self.dir / TRUSTED_ROOT).read_bytes())
        try:
            updater.refresh()
        except Exception as exc:  # noqa: BLE001  translated
            raise _translate(exc, self.base) from exc
        return updater

    def _target(self, updater: Updater, path: str) -> tuple[bytes, str] | None:
        try:
            info = updater.get_targetinfo(path)
            if info is None:
                return None
            if info.length > MAX_SMALL_TARGET:
                raise TrustError(f"{path}: {info.length} bytes, more than a channel or recipe may be")
            with self.fetcher.download_file(f"{self.base}/targets/{_hashed(path, info.hashes['sha256'])}",
                                            info.length) as f:
                info.verify_length_and_hashes(f)
                f.seek(0)
                return f.read(), info.hashes["sha256"]
        except TrustError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise _translate(exc, path) from exc

    def channel_versions(self, updater: Updater, model: str, channel: str) -> list[dict[str, Any]]:
        found = self._target(updater, f"{model}/channels/{channel}.json")
        if found is None:
            return []
        try:
            doc = json.loads(found[0])
            rows = [r for r in doc["versions"] if isinstance(r, dict)]
            for r in rows:
                version_key(r["version"])
            if doc.get("model") != model:
                raise ValueError(f"it names model {doc.get('model')!r}")
        except (ValueError, KeyError, TypeError) as exc:
            raise TrustError(f"{model}/channels/{channel}.json: malformed channel document ({exc})") from exc
        return sorted(rows, key=lambda r: version_key(r["version"]))

    def recipe(self, updater: Updater, model: str, version: str) -> tuple[Recipe, str, bytes]:
        path = f"{model}/{version}/recipe.json"
        found = self._target(updater, path)
        if found is None:
            raise TrustError(f"{path}: listed in the channel but not a signed target")
        data, sha = found
        recipe = Recipe.from_json(data, path)
        if recipe.model != model or recipe.version != version:
            raise TrustError(f"{path}: the recipe is for {recipe.model} v{recipe.version}")
        return recipe, sha, data


def _hashed(path: str, sha: str) -> str:
    dirname, sep, base = path.rpartition("/")
    return f"{dirname}{sep}{sha}.{base}"


def read_root(path: str | Path | None) -> bytes | None:
    return Path(path).read_bytes() if path else None
