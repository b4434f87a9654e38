"""The bundle: write, read, verify, pack, unpack, bare files, and every way it can be wrong."""

from __future__ import annotations

import io
import json
import os
import tarfile

import pytest

from edgeship.bundle import MANIFEST, Manifest, Preprocessing, open_bundle, pack, read_manifest, unpack, write_bundle
from edgeship.errors import BundleError, IntegrityError, SchemaError, UnsafeArchiveError


def test_roundtrip_records_every_file_and_labels(tiny_bundle):
    b = open_bundle(tiny_bundle.root)
    assert b.manifest.name == "tiny" and b.manifest.version == "3"
    assert set(b.manifest.files) == {"model.onnx", "labels.txt", "golden.npz"}
    assert b.labels == ["class-0", "class-1", "class-2", "class-3"]
    x, y = b.golden()
    assert x.shape == (1, 3, 16, 16) and y.shape == (1, 4)
    assert b.verify() == b.manifest.files
    again = Manifest.from_json(b.manifest.to_json())
    assert again == b.manifest


def test_tampered_model_fails_verification_naming_the_file(tiny_bundle):
    with open(tiny_bundle.root / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(IntegrityError, match="model.onnx: sha256 .* does not match"):
        open_bundle(tiny_bundle.root)


def test_missing_listed_file(tiny_bundle):
    (tiny_bundle.root / "labels.txt").unlink()
    with pytest.raises(IntegrityError, match="labels.txt: listed in the manifest but missing"):
        open_bundle(tiny_bundle.root)


def test_missing_path_and_non_bundle_directory(tmp_path):
    with pytest.raises(BundleError, match="no such file or folder"):
        open_bundle(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="not a bundle .no edgeship.json"):
        open_bundle(tmp_path / "empty")


def _edit_manifest(root, **changes):
    data = json.loads((root / MANIFEST).read_text())
    for key, value in changes.items():
        target = data
        *parents, leaf = key.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = value
    (root / MANIFEST).write_text(json.dumps(data))


@pytest.mark.parametrize(
    "change, message",
    [
        ({"colour": "RGB"}, r"colour: unknown field"),
        ({"preprocessing.mean": "imagenet"}, r"preprocessing.mean: expected a list"),
        ({"preprocessing.size": [224]}, r"preprocessing.size: expected 2 items"),
        ({"preprocessing.color": "RGBA"}, r"preprocessing: color: expected 'RGB', 'BGR' or 'L'"),
        ({"task": "dance"}, r"task: expected one of 'classify'"),
        ({"schema_version": 99}, r"schema_version: this edgeship reads version 1"),
        ({"inputs": [{"name": "x"}]}, r"inputs\[0\].shape: required field is missing"),
        ({"model": "../../etc/passwd"}, r"must be a plain file name"),
    ],
)
def test_invalid_manifest_fields_are_named(tiny_bundle, change, message):
    _edit_manifest(tiny_bundle.root, **change)
    with pytest.raises(SchemaError, match=message):
        read_manifest(tiny_bundle.root)


def test_manifest_not_json(tiny_bundle):
    (tiny_bundle.root / MANIFEST).write_text("{not json")
    with pytest.raises(SchemaError, match="not valid JSON"):
        open_bundle(tiny_bundle.root)


def test_write_refuses_to_overwrite_and_keeps_old_bundle_on_failure(tiny_bundle, tmp_path):
    m = tiny_bundle.manifest
    with pytest.raises(BundleError, match="already exists"):
        write_bundle(tiny_bundle.root, m, tiny_bundle.model_path)
    before = (tiny_bundle.root / MANIFEST).read_text()
    with pytest.raises(FileNotFoundError):
        write_bundle(tiny_bundle.root, m, tmp_path / "missing.onnx", overwrite=True)
    assert (tiny_bundle.root / MANIFEST).read_text() == before
    assert open_bundle(tiny_bundle.root).verify()
    leftovers = [p.name for p in tiny_bundle.root.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_write_refuses_to_replace_a_folder_that_is_not_a_bundle(tiny_bundle, tmp_path):
    other = tmp_path / "precious"
    other.mkdir()
    (other / "data.txt").write_text("keep me")
    with pytest.raises(BundleError, match="is not a bundle"):
        write_bundle(other, tiny_bundle.manifest, tiny_bundle.model_path, overwrite=True)
    assert (other / "data.txt").read_text() == "keep me"


def test_pack_unpack_roundtrip(tiny_bundle, tmp_path):
    tar = pack(tiny_bundle.root, tmp_path / "b.tar")
    out = unpack(tar, tmp_path / "unpacked")
    assert open_bundle(out).manifest == tiny_bundle.manifest
    # a .tar opens directly too
    assert open_bundle(tar).manifest.files == tiny_bundle.manifest.files


def _tar_with(path, member: tarfile.TarInfo, data: bytes = b""):
    with tarfile.open(path, "w") as tar:
        tar.addfile(member, io.BytesIO(data) if data else None)
    return path


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: (tarfile.TarInfo("../evil.txt"), b"x"), "contains '..'"),
        (lambda: (tarfile.TarInfo("/etc/evil"), b"x"), "absolute path"),
        (lambda: _link("sym", tarfile.SYMTYPE), "is a link"),
        (lambda: _link("hard", tarfile.LNKTYPE), "is a link"),
        (lambda: _dev(), "device"),
    ],
)
def test_unpack_rejects_unsafe_entries_and_writes_nothing(tmp_path, make, message):
    member, data = make()
    member.size = len(data)
    tar = _tar_with(tmp_path / "bad.tar", member, data)
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match=message):
        unpack(tar, dest)
    assert not dest.exists()
    assert not (tmp_path / "evil.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bad.tar"]


def _link(name, kind):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = "/etc/passwd"
    return info, b""


def _dev():
    info = tarfile.TarInfo("dev")
    info.type = tarfile.CHRTYPE
    info.devmajor, info.devminor = 1, 3
    return info, b""


def test_unpack_rejects_tampered_archive(tiny_bundle, tmp_path):
    tar = pack(tiny_bundle.root, tmp_path / "b.tar")
    src = tarfile.open(tar)
    bad = tmp_path / "tampered.tar"
    with tarfile.open(bad, "w") as out:
        for m in src.getmembers():
            data = src.extractfile(m).read()
            if m.name == "model.onnx":
                data = data[:-1] + bytes([data[-1] ^ 1])
            out.addfile(m, io.BytesIO(data))
    with pytest.raises(IntegrityError):
        unpack(bad, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_unpack_not_a_tar(tmp_path):
    junk = tmp_path / "junk.tar"
    junk.write_text("hello")
    with pytest.raises(BundleError, match="not a readable tar archive"):
        unpack(junk, tmp_path / "dest")


def test_bare_onnx_states_its_assumptions(tiny_onnx):
    b = open_bundle(tiny_onnx)
    assert b.is_bare and b.manifest.task.value == "classify"
    text = " ".join(b.assumed)
    assert "no edgeship.json" in text and "ImageNet mean/std" in text
    assert b.manifest.preprocessing.size == (16, 16)
    assert b.manifest.inputs[0].layout == "NCHW"


def test_corrupt_onnx_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(os.urandom(256))
    with pytest.raises(BundleError, match="not a loadable ONNX model"):
        open_bundle(bad)


def test_unknown_model_suffix(tmp_path):
    f = tmp_path / "model.pt"
    f.write_bytes(b"abc")
    with pytest.raises(BundleError, match="unknown model format"):
        open_bundle(f)


def test_preprocessing_validation_messages():
    with pytest.raises(ValueError, match="resize_to: must be at least the crop size"):
        Preprocessing(size=(224, 224), resize_to=100)
    with pytest.raises(ValueError, match="std: must not contain 0"):
        Preprocessing(std=(1.0, 0.0, 1.0))


def test_written_and_unpacked_bundles_are_readable_by_other_users(tiny_bundle, tmp_path):
    # mkdtemp staging folders are 0700; a service running as another user must still read the bundle
    old = os.umask(0o022)
    try:
        b = write_bundle(tmp_path / "w", tiny_bundle.manifest, tiny_bundle.model_path, labels=tiny_bundle.labels,
                         golden=tiny_bundle.golden())
        tar = pack(b.root, tmp_path / "w.tar")
        out = unpack(tar, tmp_path / "u")
    finally:
        os.umask(old)
    assert oct(b.root.stat().st_mode & 0o777) == oct(0o755)
    assert oct(out.stat().st_mode & 0o777) == oct(0o755)


def test_archive_errors_name_the_users_archive_not_a_staging_folder(tiny_bundle, tmp_path):
    tar_path = pack(tiny_bundle.root, tmp_path / "b.tar")
    bad = tmp_path / "bad.tar"
    with tarfile.open(tar_path) as src, tarfile.open(bad, "w") as dst:
        for m in src.getmembers():
            data = src.extractfile(m).read()
            if m.name == "model.onnx":
                data = data[:-1] + bytes([data[-1] ^ 1])
            dst.addfile(m, io.BytesIO(data))
    with pytest.raises(IntegrityError) as err:
        unpack(bad, tmp_path / "out")
    assert str(err.value).startswith(f"{bad} (member model.onnx): sha256")
    assert "/." not in str(err.value)  # no hidden staging folder in the message


def test_an_archive_is_unpacked_once_and_reused(tiny_bundle, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGESHIP_CACHE", str(tmp_path / "cache"))
    tar_path = pack(tiny_bundle.root, tmp_path / "b.tar")
    first = open_bundle(tar_path)
    mtime = (first.root / "model.onnx").stat().st_mtime_ns
    second = open_bundle(tar_path)
    assert second.root == first.root and (second.root / "model.onnx").stat().st_mtime_ns == mtime
    assert first.root.parent == tmp_path / "cache" / "bundles"
    assert second.source == tar_path and second.verify() == tiny_bundle.manifest.files


def test_verification_hashes_a_file_once_while_it_is_unchanged(tiny_bundle, tmp_path, monkeypatch):
    from edgeship.bundle import cache

    monkeypatch.setenv("EDGESHIP_CACHE", str(tmp_path / "cache"))
    calls = []
    real = cache._hash
    monkeypatch.setattr(cache, "_hash", lambda p, *a: calls.append(p.name) or real(p, *a))
    open_bundle(tiny_bundle.root)
    assert sorted(calls) == ["golden.npz", "labels.txt", "model.onnx"]
    calls.clear()
    open_bundle(tiny_bundle.root)
    assert calls == []  # size, mtime and inode unchanged: no file read again
    with open(tiny_bundle.root / "labels.txt", "a") as f:
        f.write("changed\n")
    with pytest.raises(IntegrityError, match="labels.txt: sha256"):
        open_bundle(tiny_bundle.root)
    assert calls == ["labels.txt"]
    monkeypatch.setenv("EDGESHIP_VERIFY", "full")
    calls.clear()
    with pytest.raises(IntegrityError):
        open_bundle(tiny_bundle.root)
    assert "golden.npz" in calls  # unchanged, yet read again
