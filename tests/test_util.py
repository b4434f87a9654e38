"""edgeship.util: atomic writes leave the old file or the new one, never half; the registry names its keys."""

from __future__ import annotations

import enum
import os

import pytest

from edgeship.errors import BackendError
from edgeship.util import Registry, atomic_file, atomic_path, write_text_atomic


def _leftovers(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_atomic_path_renames_what_was_written(tmp_path):
    target = tmp_path / "sub" / "model.bin"
    with atomic_path(target) as tmp:
        assert tmp.parent == target.parent and tmp != target
        tmp.write_bytes(b"new")
        assert not target.exists()  # nothing visible until the block ends
    assert target.read_bytes() == b"new"
    assert _leftovers(target.parent) == []


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path):
    target = tmp_path / "model.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="writer died"):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("writer died")
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == []


def test_atomic_path_with_nothing_written_is_an_error(tmp_path):
    target = tmp_path / "model.bin"
    with pytest.raises(FileNotFoundError, match="nothing was written"):
        with atomic_path(target):
            pass
    assert not target.exists()


def test_atomic_file_text_and_bytes(tmp_path):
    with atomic_file(tmp_path / "a.bin") as f:
        f.write(b"\x00\x01")
    with atomic_file(tmp_path / "b.txt", "w") as f:
        f.write("héllo")
    assert (tmp_path / "a.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "b.txt").read_text(encoding="utf-8") == "héllo"
    with pytest.raises(ValueError, match="mode"):
        with atomic_file(tmp_path / "c", "a"):
            pass
    (tmp_path / "d.txt").write_text("old")
    with pytest.raises(KeyError):
        with atomic_file(tmp_path / "d.txt", "w") as f:
            f.write("partial")
            raise KeyError("stop")
    assert (tmp_path / "d.txt").read_text() == "old"
    assert _leftovers(tmp_path) == []


def test_write_text_atomic_replaces_the_file(tmp_path):
    path = write_text_atomic(tmp_path / "x.json", "1\n")
    write_text_atomic(path, "2\n")
    assert path.read_text() == "2\n" and os.path.getsize(path) == 2


class Colour(str, enum.Enum):
    RED = "red"
    BLUE = "blue"


def test_registry_registers_by_decorator_and_names_known_keys():
    reg: Registry[Colour, object] = Registry("colour")

    @reg.register(Colour.RED)
    def red():
        return "r"

    assert reg.get(Colour.RED) is red and Colour.RED in reg and "red" in reg  # str enums match their value
    assert reg.get(Colour.BLUE, None) is None
    assert list(reg) == [Colour.RED] and len(reg) == 1 and reg.names() == ["red"]
    with pytest.raises(LookupError, match=r"no colour 'blue' is registered; known: red"):
        reg.get(Colour.BLUE)


def test_registry_raises_the_error_it_was_given():
    reg: Registry[str, int] = Registry("backend", BackendError)
    with pytest.raises(BackendError, match="known: none"):
        reg.get("tpu")


def test_not_durable_still_replaces_whole_files(tmp_path):
    path = write_text_atomic(tmp_path / "temp", "41000\n", durable=False)
    write_text_atomic(path, "42000\n", durable=False)
    assert path.read_text() == "42000\n" and _leftovers(tmp_path) == []
