"""Files that matter are written through edgeship.util's atomic helpers, not a hand-rolled temp + rename."""

from __future__ import annotations

import ast
import os
import tarfile
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "edgeship"

# Renames that are not "write a file under a temp name": each says why it is its own code.
ALLOWED = {
    "util.py": "atomic_path itself",
    "ota/fsutil.py": "the OTA store's durable writes, with fault-injection points the crash tests stop at",
    "ota/fetch.py": "a resumable download's .part, renamed once its sha256 matches the signed recipe",
    "bundle/store.py": "whole bundle folders swapped in (a folder, not a file)",
    "runtime/backends/ort_weights.py": "a cache folder published whole (a folder, not a file)",
}


def _renames(path: Path) -> list[int]:
    lines = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("replace", "rename"):
            if isinstance(node.func.value, ast.Name) and node.func.value.id == "os":
                lines.append(node.lineno)
    return lines


def test_no_hand_rolled_temp_file_and_rename():
    found = {}
    for path in SRC.rglob("*.py"):
        rel = path.relative_to(SRC).as_posix()
        if rel not in ALLOWED and _renames(path):
            found[rel] = _renames(path)
    assert found == {}, "write through edgeship.util.atomic_path / atomic_file instead"


def test_folder_renames_in_bundle_store_are_only_folders():
    text = (SRC / "bundle" / "store.py").read_text(encoding="utf-8")
    assert 'f".{path.name}.tmp"' not in text and ".tmp.npy" not in text and 'f".{name}.tmp"' not in text


def test_write_tar_is_durable_and_leaves_nothing_on_failure(tmp_path, monkeypatch):
    from edgeship.bundle.archive import write_tar
    from edgeship.errors import UnsafeArchiveError

    (tmp_path / "a.txt").write_text("alpha")
    (tmp_path / "b.txt").write_text("beta")
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    out = tmp_path / "out" / "bundle.tar"
    out.parent.mkdir()
    write_tar(tmp_path, ["a.txt", "b.txt"], out)
    assert synced, "the archive was renamed into place without an fsync: a power cut can leave it empty"
    with tarfile.open(out) as tar:
        assert tar.getnames() == ["a.txt", "b.txt"]
    before = out.read_bytes()
    os.symlink(tmp_path / "a.txt", tmp_path / "link.txt")
    with pytest.raises(UnsafeArchiveError):
        write_tar(tmp_path, ["a.txt", "link.txt"], out)
    assert out.read_bytes() == before and sorted(p.name for p in out.parent.iterdir()) == ["bundle.tar"]
