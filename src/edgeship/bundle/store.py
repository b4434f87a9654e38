"""The bundle: the one artifact every stage produces and every other stage consumes.

A bundle is a directory::

    mobilenet/
      edgeship.json   manifest: name, version, task, format, inputs, preprocessing,
                      labels, sha256 of every file, provenance, golden check
      model.onnx      the model (or model.tflite / model.gguf)
      labels.txt      one label per line, where the task has labels
      golden.npz      a golden input and the output the model gave for it

>>> b = open_bundle("mobilenet")            # a directory, a .tar, or a bare .onnx
>>> b.verify()                               # every sha256, or IntegrityError
>>> pack("mobilenet", "mobilenet.tar"); unpack("mobilenet.tar", "/opt/models/m")

A bare model file is accepted everywhere: ``open_bundle("model.onnx")`` builds a
manifest from the graph and fills the rest with defaults listed in
``bundle.assumed``, which commands print so the user sees what was guessed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import stat
import tarfile
import tempfile
from pathlib import Path
from typing import Any, Mapping

from ..errors import BundleError, IntegrityError, NotABundleError, SchemaError
from ..util import atomic_file, atomic_path, write_text_atomic
from .archive import UnpackLimits, extract_checked, write_tar
from .cache import cache_dir, file_sha256
from .manifest import LABELS_FILE, MANIFEST, MAX_MANIFEST_BYTES, Golden, Manifest, PathLike, check_member_name

# Files read whole into memory when a model loads: bounded so that a crafted bundle cannot make
# a device allocate gigabytes (ImageNet-21k has 21,843 labels; a golden pair is one input row).
MAX_LABELS = 100_000
MAX_LABELS_BYTES = 8 << 20
MAX_GOLDEN_BYTES = 256 << 20


def sha256_file(path: PathLike, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _umask() -> int:
    """The process umask, read without changing it (os.umask would race with other threads)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


def _readable_like_a_new_folder(folder: Path) -> None:
    # mkdtemp makes staging folders 0700: a service running as another user could not read the
    # bundle. Give the folder the mode a plain mkdir would have had.
    os.chmod(folder, 0o777 & ~_umask())


class Bundle:
    """An opened bundle: its root folder, manifest and, for bare files, what was assumed."""

    def __init__(self, root: Path, manifest: Manifest, assumed: list[str] | None = None,
                 source: Path | None = None):
        self.root = root
        self.manifest = manifest
        self.assumed = assumed or []
        self.source = source or root

    def __repr__(self) -> str:
        return f"Bundle({self.manifest.name!r}, version={self.manifest.version!r}, root={str(self.root)!r})"

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def is_bare(self) -> bool:
        return bool(self.assumed)

    @property
    def model_path(self) -> Path:
        return self.root / self.manifest.model

    @property
    def labels(self) -> list[str] | None:
        if self.manifest.labels is None:
            return None
        if not hasattr(self, "_labels"):
            path = self.root / self.manifest.labels
            try:
                with open(path, "rb") as f:
                    raw = f.read(MAX_LABELS_BYTES + 1)
            except OSError as exc:
                raise BundleError(f"{path}: labels file named in the manifest cannot be read ({exc})") from exc
            if len(raw) > MAX_LABELS_BYTES:
                raise BundleError(f"{path}: labels file is over {MAX_LABELS_BYTES:,} bytes; one label per line, "
                                  f"at most {MAX_LABELS:,} labels")
            try:
                labels = raw.decode("utf-8").splitlines()
            except UnicodeDecodeError as exc:
                raise BundleError(f"{path}: labels file is not UTF-8 text ({exc})") from exc
            if len(labels) > MAX_LABELS:
                raise BundleError(f"{path}: {len(labels):,} labels, over the limit of {MAX_LABELS:,}")
            self._labels = labels
        return self._labels

    def golden(self, spec: Golden | None = None):
        """(input, output) arrays stored with the bundle (or in ``spec``'s file, a variant's), or None."""
        spec = spec or self.manifest.golden
        if spec is None:
            return None
        import zipfile

        import numpy as np

        path = self.root / spec.file
        try:
            # np.load inflates each member whole: check what the archive declares first (zipfile
            # never inflates past a member's declared size).
            with zipfile.ZipFile(path) as z:
                declared = sum(i.file_size for i in z.infolist())
            if declared > MAX_GOLDEN_BYTES:
                raise BundleError(f"{path}: golden arrays declare {declared:,} bytes, over the limit of "
                                  f"{MAX_GOLDEN_BYTES:,}; re-export the bundle")
            with np.load(path, allow_pickle=False) as data:
                return data["input"], data["output"]
        except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
            raise BundleError(f"{path}: golden file unreadable ({exc}); re-export the bundle") from exc

    def display(self, name: str) -> str:
        """How to name member ``name`` to the user: inside the archive they gave, or in the folder."""
        if self.source != self.root and not self.is_bare:
            return f"{self.source} (member {name})"
        return str(self.root / name)

    def verify(self) -> dict[str, str]:
        """Check every file's sha256 against the manifest; raise IntegrityError naming the first bad one.

        Every file the manifest makes edgeship read (model, labels, golden, anchors) must be listed
        in ``files``, each listed file must be a regular file in the bundle (not a link), and the
        bundle must hold nothing else: an unlisted file is never verified, yet a runtime could read
        it (ONNX external weights are looked up next to the model). The sha256 list detects damage,
        not tampering: whoever can rewrite a file can rewrite the manifest too (signed updates,
        ``edgeship ota``, defend against that).

        Digests come from ``cache.file_sha256``: a file unchanged since it was last hashed (same size,
        mtime, inode) is not read again.
        """
        if self.is_bare:
            return {}
        files = self.manifest.files
        for field, name in self.manifest.references().items():
            if name not in files:
                raise IntegrityError(f"{self.display(name)}: named by the manifest's {field} but not listed in its "
                                     "files with a sha256, so it cannot be verified; re-create the bundle")
        self._check_contents()
        for name, expected in files.items():
            path = self.root / name
            actual = file_sha256(path)
            if actual != expected:
                raise IntegrityError(
                    f"{self.display(name)}: sha256 {actual[:16]}... does not match the manifest's {expected[:16]}...; "
                    "the file was changed or damaged in transfer: copy the bundle again"
                )
        return dict(self.manifest.files)

    def _check_contents(self) -> None:
        """Every listed file present as a regular file, and nothing else in the folder."""
        files = self.manifest.files
        for name in files:
            try:
                mode = os.lstat(self.root / name).st_mode
            except FileNotFoundError:
                raise IntegrityError(f"{self.display(name)}: listed in the manifest but missing; the bundle is incomplete") from None
            except OSError as exc:
                raise IntegrityError(f"{self.display(name)}: cannot be read ({exc})") from exc
            if not stat.S_ISREG(mode):
                # A link could point anywhere (/dev/zero would hang the hashing); a fifo blocks.
                raise IntegrityError(f"{self.display(name)}: not a regular file (a link, folder or device); "
                                     "a bundle holds plain files only")
        extra = sorted(p.name for p in self.root.iterdir() if p.name != MANIFEST and p.name not in files)
        if extra:
            shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
            raise IntegrityError(f"{self.display(extra[0])}: not listed in the manifest's files ({shown}); a bundle "
                                 "holds only files it verifies: remove them or re-create the bundle")


def read_manifest(root: PathLike) -> Manifest:
    root = Path(root)
    path = root / MANIFEST
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise BundleError(f"{path}: not a regular file")
        with open(path, "rb") as f:
            raw = f.read(MAX_MANIFEST_BYTES + 1)
        if len(raw) > MAX_MANIFEST_BYTES:
            raise SchemaError(f"{path}: over the limit of {MAX_MANIFEST_BYTES:,} bytes; re-export the bundle")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise NotABundleError(
            f"{root}: not a bundle (no {MANIFEST}); give a bundle folder, a .tar, or a .onnx/.tflite/.gguf file"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path}: cannot be read ({exc})") from exc
    return Manifest.from_json(text, source=str(path))


def open_bundle(path: PathLike, verify: bool = True) -> Bundle:
    """Open a bundle folder, a bundle ``.tar`` or a bare model file."""
    path = Path(path)
    if not path.exists():
        raise NotABundleError(f"{path}: no such file or folder")
    if path.is_dir():
        bundle = Bundle(path, read_manifest(path))
        if not (path / bundle.manifest.model).is_file():
            raise BundleError(f"{path}: the model file {bundle.manifest.model} named in {MANIFEST} is missing")
    elif path.suffix.lower() not in (".onnx", ".tflite", ".gguf") and tarfile.is_tarfile(path):
        root = unpacked(path)
        bundle = Bundle(root, read_manifest(root), source=path)
    elif (path.parent / MANIFEST).is_file() and _describes(path):
        # a model file inside a bundle folder: that folder's edgeship.json says how to run it
        bundle = Bundle(path.parent, read_manifest(path.parent))
    else:
        return _bare_bundle(path)
    if verify:
        bundle.verify()
    return bundle


def _bare_bundle(path: Path) -> "Bundle":
    """A Bundle for a bare model file. When the file brings labels or needs anchors, they are written
    beside a hard link of it in edgeship's cache (a folder per file digest), as a bundle would hold them."""
    import numpy as np

    from .bare import _inferred

    found, assumed = _inferred(path)
    if not found.labels and not found.extra_files:
        return Bundle(path.parent, found.manifest, assumed=assumed, source=path)
    root = cache_dir() / "bare" / file_sha256(path)[:32]
    manifest = found.manifest
    if found.labels:
        manifest = dataclasses.replace(manifest, labels=LABELS_FILE)
    if not (root / MANIFEST).is_file() or (root / MANIFEST).read_text(encoding="utf-8") != manifest.to_json():
        root.mkdir(parents=True, exist_ok=True)
        target = root / path.name
        if not target.exists():
            with atomic_path(target) as tmp:
                try:
                    os.link(path, tmp)
                except OSError:  # another file system: copy
                    shutil.copyfile(path, tmp)
        if found.labels:
            write_text_atomic(root / LABELS_FILE, "\n".join(found.labels) + "\n")
        for name, arr in found.extra_files.items():
            with atomic_file(root / name) as f:
                np.save(f, arr)
        write_text_atomic(root / MANIFEST, manifest.to_json())
    return Bundle(root, manifest, assumed=assumed, source=path)


def _describes(model: Path) -> bool:
    try:
        manifest = read_manifest(model.parent)
    except BundleError:
        return False
    return manifest.model == model.name


def write_bundle(
    out: PathLike,
    manifest: Manifest,
    model_file: PathLike,
    labels: list[str] | None = None,
    golden: tuple[Any, Any] | None = None,
    extra_files: Mapping[str, PathLike] | None = None,
    overwrite: bool = False,
) -> Bundle:
    """Write a complete bundle to ``out`` atomically: built in a sibling temp folder, then renamed.

    The manifest's ``files``, ``labels`` and ``golden`` fields are filled in here. If anything fails,
    ``out`` is left as it was (absent, or the previous bundle).
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise BundleError(f"{out}: already exists; choose another folder or pass overwrite (--force)")
    if out.exists() and not (out / MANIFEST).is_file():
        raise BundleError(f"{out}: exists and is not a bundle; refusing to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model_name = manifest.model
        shutil.copyfile(model_file, staging / model_name)
        label_name = None
        if labels is not None:
            label_name = LABELS_FILE
            (staging / label_name).write_text("\n".join(labels) + "\n", encoding="utf-8")
        golden_spec = manifest.golden
        if golden is not None:
            import numpy as np

            golden_spec = golden_spec or Golden()
            np.savez(staging / golden_spec.file, input=np.asarray(golden[0]), output=np.asarray(golden[1]))
        for name, src in (extra_files or {}).items():
            check_member_name(name, "extra file")
            shutil.copyfile(src, staging / name)
        files = {}
        for p in sorted(staging.iterdir()):
            if p.is_file() and p.name != MANIFEST:
                files[p.name] = sha256_file(p)
        final = dataclasses.replace(manifest, labels=label_name or manifest.labels, golden=golden_spec, files=files)
        for field, name in final.references().items():
            if name not in files:
                raise BundleError(f"{out}: the manifest's {field} names {name!r}, which was not given "
                                  "(pass it as labels, golden or extra_files, or clear the field)")
        for p in staging.iterdir():
            with open(p, "rb") as f:
                os.fsync(f.fileno())
        write_text_atomic(staging / MANIFEST, final.to_json())
        _readable_like_a_new_folder(staging)
        if out.exists():
            old = out.with_name(f".{out.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(out, old)
            os.replace(staging, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Bundle(out, final)


def update_manifest(bundle_dir: PathLike, manifest: Manifest) -> None:
    """Rewrite edgeship.json in place (atomically), e.g. to add a provenance row."""
    write_text_atomic(Path(bundle_dir) / MANIFEST, manifest.to_json())


def add_files(bundle_dir: PathLike, files: dict[str, PathLike], change=None) -> Bundle:
    """Copy ``files`` (member name -> source) into a bundle folder and record their sha256.

    Each file is written to a temporary name, fsynced and renamed; the manifest (with ``change``,
    a function Manifest -> Manifest, applied) is written last, atomically. A crash in between leaves
    files the manifest does not list, never a manifest naming a missing or half-written file.
    """
    bundle = open_bundle(bundle_dir)
    if bundle.is_bare or bundle.source != bundle.root:
        raise BundleError(f"{bundle_dir}: give a bundle folder (not a .tar or a bare model file) to add files to")
    digests = {}
    for name, src in files.items():
        check_member_name(name, "file")
        dest = bundle.root / name
        with atomic_path(dest) as tmp:
            shutil.copyfile(src, tmp)
        digests[name] = sha256_file(dest)
    manifest = dataclasses.replace(bundle.manifest, files={**bundle.manifest.files, **digests})
    if change is not None:
        manifest = change(manifest)
    update_manifest(bundle.root, manifest)
    return Bundle(bundle.root, manifest)


def pack(bundle_dir: PathLike, tar_path: PathLike) -> Path:
    """Pack a verified bundle folder into one uncompressed ``.tar`` (models compress poorly)."""
    bundle = open_bundle(bundle_dir)
    if bundle.is_bare or bundle.source != bundle.root:
        raise BundleError(f"{bundle_dir}: pack takes a bundle folder")
    return write_tar(bundle.root, [MANIFEST, *sorted(bundle.manifest.files)], Path(tar_path))


def unpack(tar_path: PathLike, dest: PathLike, limits: UnpackLimits = UnpackLimits()) -> Path:
    """Unpack a bundle ``.tar`` (or .tar.gz/.bz2/.xz) into ``dest`` (which must not exist), then verify it.

    Entries are checked as they are read (``archive.extract_checked``: safe names, regular files,
    bounded counts and bytes) into a staging folder; on any failure ``dest`` is not created.
    """
    tar_path, dest = Path(tar_path), Path(dest)
    if dest.exists():
        raise BundleError(f"{dest}: already exists; unpack into a new folder")
    if not tar_path.is_file():
        raise BundleError(f"{tar_path}: not a readable tar archive (no such file)")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        extract_checked(tar_path, staging, limits)
        bundle = Bundle(staging, read_manifest(staging), source=tar_path)
        bundle.verify()
        _readable_like_a_new_folder(staging)
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return dest


def unpacked(tar_path: PathLike) -> Path:
    """A bundle folder holding ``tar_path``'s contents, unpacked (and verified) once per archive."""
    tar_path = Path(tar_path)
    dest = cache_dir() / "bundles" / file_sha256(tar_path)[:32]
    if (dest / "edgeship.json").is_file():
        return dest
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        return unpack(tar_path, dest)
    except BundleError:
        if (dest / "edgeship.json").is_file():  # another process unpacked the same archive meanwhile
            return dest
        raise
    except OSError as exc:
        raise BundleError(f"{tar_path}: cannot unpack into the cache {dest.parent} ({exc}); "
                          "set EDGESHIP_CACHE to a writable folder") from exc
