"""Bundles and archives crafted by an attacker who has read store.py and archive.py.

Each test is one class of defect: a manifest naming files outside the bundle, referenced files left
out of the sha256 list, unlisted extras, links, archives that fill a disk (sparse members, gzip
bombs, too many entries, declared sizes), truncated archives, and manifest values that make every
request allocate gigabytes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile

import pytest

from edgeship.bundle import MANIFEST, open_bundle, pack, read_manifest, unpack
from edgeship.errors import BundleError, IntegrityError, SchemaError, UnsafeArchiveError


def _manifest(root) -> dict:
    return json.loads((root / MANIFEST).read_text())


def _write(root, data: dict) -> None:
    (root / MANIFEST).write_text(json.dumps(data))


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the manifest's files list ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["../secret.txt", "/etc/hostname", "sub/../../secret.txt", "a\nb", "sub/x"])
def test_files_entries_must_be_plain_names_inside_the_bundle(tiny_bundle, tmp_path, name):
    secret = tmp_path / "secret.txt"
    secret.write_text("not for the archive\n")
    data = _manifest(tiny_bundle.root)
    data["files"][name] = _sha(secret)
    _write(tiny_bundle.root, data)
    with pytest.raises(SchemaError, match="files: .* must be a plain file name inside the bundle"):
        read_manifest(tiny_bundle.root)
    with pytest.raises(SchemaError):
        pack(tiny_bundle.root, tmp_path / "out.tar")
    assert not (tmp_path / "out.tar").exists()


def test_a_file_digest_must_be_a_sha256(tiny_bundle):
    data = _manifest(tiny_bundle.root)
    data["files"]["labels.txt"] = "x" * 64
    _write(tiny_bundle.root, data)
    with pytest.raises(SchemaError, match=r"files.labels.txt: expected a sha256"):
        read_manifest(tiny_bundle.root)


@pytest.mark.parametrize("field", ["labels", "golden"])
def test_every_file_the_manifest_references_must_be_listed(tiny_bundle, field):
    data = _manifest(tiny_bundle.root)
    name = data["labels"] if field == "labels" else data["golden"]["file"]
    del data["files"][name]
    _write(tiny_bundle.root, data)
    (tiny_bundle.root / name).write_bytes(b"swapped, unverified\n")
    with pytest.raises(IntegrityError, match=f"{name}: named by the manifest's {field}.* not listed"):
        open_bundle(tiny_bundle.root)


def test_anchors_must_be_listed(tiny_bundle):
    data = _manifest(tiny_bundle.root)
    data["postprocessing"]["anchors"] = "anchors.npy"
    _write(tiny_bundle.root, data)
    (tiny_bundle.root / "anchors.npy").write_bytes(b"\x93NUMPY swapped")
    with pytest.raises(IntegrityError, match="anchors.npy: named by the manifest's postprocessing.anchors"):
        open_bundle(tiny_bundle.root)


def test_unlisted_files_in_a_bundle_folder_are_refused(tiny_bundle):
    # An ONNX model may keep its weights in a side file that ONNX Runtime reads from the model's
    # folder: a file the manifest does not list would be used without ever being verified.
    (tiny_bundle.root / "model.onnx.data").write_bytes(b"\0" * 64)
    with pytest.raises(IntegrityError, match=r"model.onnx.data: not listed in the manifest's files"):
        open_bundle(tiny_bundle.root)


def test_a_listed_file_that_is_a_link_is_refused(tiny_bundle, tmp_path):
    outside = tmp_path / "outside-labels.txt"
    shutil.move(tiny_bundle.root / "labels.txt", outside)
    os.symlink(outside, tiny_bundle.root / "labels.txt")  # same bytes, same sha256, yet outside
    with pytest.raises(IntegrityError, match="labels.txt: not a regular file"):
        open_bundle(tiny_bundle.root)


@pytest.mark.timeout(20)
def test_a_manifest_that_is_a_fifo_does_not_hang(tiny_bundle):
    (tiny_bundle.root / MANIFEST).unlink()
    os.mkfifo(tiny_bundle.root / MANIFEST)
    with pytest.raises(BundleError, match="not a regular file"):
        read_manifest(tiny_bundle.root)


# --- manifest values that drive allocation ---------------------------------------------------


@pytest.mark.parametrize(
    "change, message",
    [
        ({"preprocessing.size": [100000, 100000]}, r"preprocessing: size: each side must be within 1..8192"),
        ({"preprocessing.resize_to": 10 ** 9}, r"preprocessing: resize_to: must be within"),
        ({"preprocessing.pad_value": 300}, r"preprocessing: pad_value: must be within 0..255"),
        ({"postprocessing.top_k": 10 ** 9}, r"postprocessing: top_k: must be within 1..1000"),
        ({"postprocessing.max_detections": 10 ** 9}, r"postprocessing: max_detections: must be within"),
        ({"postprocessing.anchors": "../anchors.npy"}, r"anchors: .* must be a plain file name"),
        ({"name": "tiny\nERROR forged log line"}, r"name: expected 1-128 letters"),
        ({"name": "x" * 129}, r"name: expected 1-128 letters"),
        ({"name": "../../v1"}, r"name: expected"),
        ({"version": "1 <script>"}, r"version: expected"),
    ],
)
def test_manifest_values_are_bounded_and_the_field_named(tiny_bundle, change, message):
    data = _manifest(tiny_bundle.root)
    for key, value in change.items():
        target = data
        *parents, leaf = key.split(".")
        for p in parents:
            target = target.setdefault(p, {})
        target[leaf] = value
    _write(tiny_bundle.root, data)
    with pytest.raises(SchemaError, match=message):
        read_manifest(tiny_bundle.root)


def test_a_deeply_nested_manifest_is_a_schema_error_not_a_recursion_error(tiny_bundle):
    data = _manifest(tiny_bundle.root)
    text = json.dumps(data)[:-1] + ', "metadata": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}}"
    (tiny_bundle.root / MANIFEST).write_text(text)
    with pytest.raises(SchemaError, match="nested more than 32 levels"):
        read_manifest(tiny_bundle.root)


def test_labels_file_size_is_bounded(tiny_bundle, monkeypatch):
    from edgeship.bundle import store

    monkeypatch.setattr(store, "MAX_LABELS_BYTES", 1000)
    b = open_bundle(tiny_bundle.root, verify=False)
    (tiny_bundle.root / "labels.txt").write_text("label\n" * 1000)
    with pytest.raises(BundleError, match="labels file is over 1,000 bytes"):
        _ = b.labels


def test_golden_arrays_declared_size_is_bounded(tiny_bundle, monkeypatch):
    from edgeship.bundle import store

    monkeypatch.setattr(store, "MAX_GOLDEN_BYTES", 100)
    with pytest.raises(BundleError, match="golden arrays declare .* bytes, over the limit of 100"):
        open_bundle(tiny_bundle.root).golden()


def test_bare_model_file_names_become_safe_model_names(tiny_onnx, tmp_path):
    odd = tmp_path / "my model (v2).onnx"
    shutil.copy(tiny_onnx, odd)
    assert open_bundle(odd).name == "my-model-v2"


# --- archives ------------------------------------------------------------------------------------


def _repack(src_tar, dst_tar, extra: dict[str, bytes] | None = None, mode: str = "w"):
    with tarfile.open(src_tar) as src, tarfile.open(dst_tar, mode) as out:
        for m in src.getmembers():
            out.addfile(m, src.extractfile(m))
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return dst_tar


def test_an_archive_with_an_unlisted_member_is_refused(tiny_bundle, tmp_path):
    tar = _repack(pack(tiny_bundle.root, tmp_path / "b.tar"), tmp_path / "extra.tar", {"model.onnx.data": b"\0" * 64})
    with pytest.raises(IntegrityError, match=r"member model.onnx.data\): not listed"):
        unpack(tar, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_truncated_archive_is_a_clear_bundle_error(tiny_bundle, tmp_path):
    tar = pack(tiny_bundle.root, tmp_path / "b.tar")
    data = tar.read_bytes()
    cut = tmp_path / "cut.tar"
    model_end = data.index(b"model.onnx") + 1024  # inside the model's data
    cut.write_bytes(data[:model_end])
    with pytest.raises(BundleError, match="truncated"):
        unpack(cut, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tar", "cut.tar", "tiny-bundle", "tiny.onnx"]


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar makes the sparse member")
def test_a_sparse_member_is_refused_before_a_byte_is_written(tmp_path):
    # 2 MB on disk would be 64 GB with a bigger truncate: a sparse member declares what it likes.
    src = tmp_path / "src"
    src.mkdir()
    with open(src / "model.onnx", "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["tar", "-S", "-cf", str(tmp_path / "sparse.tar"), "-C", str(src), "model.onnx"], check=True)
    assert (tmp_path / "sparse.tar").stat().st_size < 64 << 10
    with pytest.raises(UnsafeArchiveError, match="model.onnx' is a sparse file"):
        unpack(tmp_path / "sparse.tar", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_gzip_bomb_stops_at_the_ratio_limit(tmp_path):
    bomb = tmp_path / "bomb.tar.gz"
    size = 80 << 20  # 80 MB of zeros: 80 KB of gzip
    with gzip.open(bomb, "wb", compresslevel=1) as gz, tarfile.open(fileobj=gz, mode="w|") as tar:
        info = tarfile.TarInfo("model.onnx")
        info.size = size
        tar.addfile(info, io.BytesIO(bytes(size)))
    assert bomb.stat().st_size < size // 100
    with pytest.raises(UnsafeArchiveError, match="a decompression bomb"):
        unpack(bomb, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["bomb.tar.gz"]


def test_declared_bytes_over_the_limit_are_refused_before_writing(tmp_path):
    from edgeship.bundle.archive import UnpackLimits

    tar = tmp_path / "big.tar"
    with tarfile.open(tar, "w") as t:
        info = tarfile.TarInfo("model.onnx")
        info.size = 4096
        t.addfile(info, io.BytesIO(bytes(4096)))
    with pytest.raises(UnsafeArchiveError, match="entries declare over 4,096 bytes, more than the limit of 1,000"):
        unpack(tar, tmp_path / "out", UnpackLimits(max_bytes=1000))


def test_too_many_members_are_refused(tmp_path):
    tar = tmp_path / "many.tar"
    with tarfile.open(tar, "w") as t:
        for i in range(1000):
            info = tarfile.TarInfo(f"f{i}")
            t.addfile(info, io.BytesIO(b""))
    with pytest.raises(UnsafeArchiveError, match="more than 66 entries"):
        unpack(tar, tmp_path / "out")


def test_a_huge_extended_header_is_refused_unread(tmp_path):
    tar = tmp_path / "pax.tar"
    with tarfile.open(tar, "w", format=tarfile.PAX_FORMAT) as t:
        info = tarfile.TarInfo("model.onnx")
        info.pax_headers = {"comment": "x" * (2 << 20)}
        t.addfile(info, io.BytesIO(b""))
    with pytest.raises(UnsafeArchiveError, match="an extended header of"):
        unpack(tar, tmp_path / "out")


def test_folders_in_an_archive_are_refused(tmp_path):
    tar = tmp_path / "dir.tar"
    with tarfile.open(tar, "w") as t:
        info = tarfile.TarInfo("sub")
        info.type = tarfile.DIRTYPE
        t.addfile(info)
    with pytest.raises(UnsafeArchiveError, match="'sub' is a folder"):
        unpack(tar, tmp_path / "out")


def test_a_gzipped_bundle_still_unpacks(tiny_bundle, tmp_path):
    tar = pack(tiny_bundle.root, tmp_path / "b.tar")
    gz = tmp_path / "b.tar.gz"
    gz.write_bytes(gzip.compress(tar.read_bytes()))
    out = unpack(gz, tmp_path / "out")
    assert open_bundle(out).manifest == tiny_bundle.manifest


def test_anchors_declaring_a_billion_rows_are_refused_before_loading(tiny_bundle):
    import numpy as np

    from edgeship.runtime.decoders.detect import load_anchors

    path = tiny_bundle.root / "anchors.npy"
    with open(path, "wb") as f:  # 100 bytes whose header declares 16 GB of float32
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (10 ** 9, 4)})
        f.write(b"\0" * 16)
    data = _manifest(tiny_bundle.root)
    data["postprocessing"].update(anchors="anchors.npy", decoder="ssd")
    data["files"]["anchors.npy"] = _sha(path)
    _write(tiny_bundle.root, data)
    with pytest.raises(BundleError, match=r"anchors declare shape \[1000000000, 4\]"):
        load_anchors(open_bundle(tiny_bundle.root))
