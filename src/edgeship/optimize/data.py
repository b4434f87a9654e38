"""Labelled image data for distillation, pruning, calibration and accuracy: Fashion-MNIST or a folder.

>>> train = load_dataset(DataSpec(), "train")       # Fashion-MNIST from the Debian package, 60k
>>> test = load_dataset(DataSpec(), "test")         # 10k
>>> x, y = test.batch(range(256))                   # float32 [256, 1, 28, 28] normalised, int64 [256]
>>> folder = load_dataset(DataSpec(source="photos/", image_size=(64, 64)), "train")

Fashion-MNIST is read from its idx files (``apt-get install dataset-fashion-mnist``), never
downloaded. An image folder has ``train/<class>/*`` and ``test/<class>/*`` (or ``val/``).
Images are kept as uint8 and normalised per batch, so 60k images take 47 MB, not 188.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Union

import numpy as np

from ..errors import InputError

FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_LABELS = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]
# Per-pixel statistics of the 60k training images on the 0..1 scale.
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530
_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}


@dataclass(frozen=True)
class DataSpec:
    """Where the labelled images come from; the recipe's ``data:`` section."""

    source: str = "fashion-mnist"  # or a folder with train/ and test/ (or val/) class subfolders
    root: Union[str, None] = None  # Fashion-MNIST folder; None: the Debian package's
    train_limit: Union[int, None] = None  # a seeded random subset of the training split
    test_limit: Union[int, None] = None  # None: the whole test split (10k for Fashion-MNIST)
    image_size: Union[tuple[int, int], None] = None  # folders: (height, width) to resize to; default 64x64
    grayscale: bool = False  # folders: one channel instead of RGB
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("train_limit", "test_limit"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise InputError(f"{name}: must be at least 1 or null, got {v}")
        if self.image_size is not None and min(self.image_size) < 8:
            raise InputError(f"image_size: at least 8x8, got {list(self.image_size)}")


@dataclass
class ArrayDataset:
    """Images as uint8 ``[N, C, H, W]``, integer labels, and how to normalise them."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    mean: tuple[float, ...] = (FASHION_MNIST_MEAN,)
    std: tuple[float, ...] = (FASHION_MNIST_STD,)
    name: str = "dataset"
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or len(self.images) != len(self.labels):
            raise InputError(f"{self.name}: images must be [N, C, H, W] with one label each")

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one sample."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def normalise(self, images: np.ndarray) -> np.ndarray:
        mean = np.asarray(self.mean, np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(1, -1, 1, 1)
        return (images.astype(np.float32) * np.float32(1 / 255) - mean) / std

    def batch(self, index: Union[Iterable[int], np.ndarray, slice]) -> tuple[np.ndarray, np.ndarray]:
        """Normalised float32 inputs and int64 labels for ``index``."""
        idx = index if isinstance(index, slice) else np.asarray(list(index) if not isinstance(index, np.ndarray) else index)
        return self.normalise(self.images[idx]), self.labels[idx].astype(np.int64)

    def batches(self, size: int) -> Iterable[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(self), size):
            yield self.batch(slice(start, start + size))

    def subset(self, n: Union[int, None], seed: int = 0) -> "ArrayDataset":
        """A seeded random subset of ``n`` samples (the whole set when ``n`` is None or larger)."""
        if n is None or n >= len(self):
            return self
        idx = np.sort(np.random.default_rng(seed).permutation(len(self))[:n])
        return ArrayDataset(self.images[idx], self.labels[idx], self.classes, self.mean, self.std,
                            self.name, {**self.info, "subset_of": len(self), "subset_seed": seed})


def _read_idx(path: Path, magic: int, ndim: int) -> np.ndarray:
    """One idx file (gzip): a big-endian header of ``ndim`` sizes, then uint8 data."""
    fix = "reinstall it: apt-get install --reinstall dataset-fashion-mnist"
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        raise InputError(f"{path}: Fashion-MNIST file missing; install it: apt-get install dataset-fashion-mnist") from None
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise InputError(f"{path}: corrupt gzip data ({exc}); {fix}") from exc
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise InputError(f"{path}: {len(raw)} bytes, shorter than the idx header; {fix}")
    found = struct.unpack(">I", raw[:4])[0]
    if found != magic:
        raise InputError(f"{path}: idx magic number 0x{found:08x}, expected 0x{magic:08x}; {fix}")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(dims))
    if len(raw) - header != expected:
        raise InputError(
            f"{path}: header says {'x'.join(map(str, dims))} = {expected} bytes of data, the file holds "
            f"{len(raw) - header}; {fix}"
        )
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def load_fashion_mnist(split: str = "train", root: Union[str, os.PathLike, None] = None) -> ArrayDataset:
    """Fashion-MNIST ``train`` (60k) or ``test`` (10k) as uint8 ``[N, 1, 28, 28]``."""
    if split not in _FILES:
        raise InputError(f"split: expected 'train' or 'test', got {split!r}")
    folder = Path(root) if root is not None else FASHION_MNIST_ROOT
    if not folder.is_dir():
        raise InputError(f"{folder}: Fashion-MNIST not found; install it: apt-get install dataset-fashion-mnist")
    image_file, label_file = (folder / name for name in _FILES[split])
    images = _read_idx(image_file, 0x00000803, 3)
    labels = _read_idx(label_file, 0x00000801, 1)
    if len(images) != len(labels):
        raise InputError(f"{folder}: {len(images)} {split} images but {len(labels)} labels; the files do not belong together")
    if labels.size and labels.max() >= len(FASHION_MNIST_LABELS):
        raise InputError(f"{label_file}: label {int(labels.max())} out of range 0..9; the file is damaged")
    return ArrayDataset(images[:, None], labels.astype(np.int64), list(FASHION_MNIST_LABELS),
                        name=f"fashion-mnist/{split}", info={"source": str(folder), "split": split})


def load_image_folder(root: Union[str, os.PathLike], size: tuple[int, int] = (64, 64), grayscale: bool = False,
                      classes: list[str] | None = None) -> ArrayDataset:
    """``root/<class>/<image>`` into memory, resized to ``size`` (height, width). Classes sort by name."""
    from PIL import Image, UnidentifiedImageError

    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder")
    found = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    classes = classes or found
    if not classes:
        raise InputError(f"{root}: no class subfolders (expected {root}/<class>/<image>)")
    h, w = size
    images, labels = [], []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue  # a class absent from this split
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in _IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(path) as im:
                    im = im.convert("L" if grayscale else "RGB").resize((w, h), Image.BILINEAR)
                    arr = np.asarray(im, np.uint8)
            except (OSError, UnidentifiedImageError) as exc:
                raise InputError(f"{path}: not a readable image ({exc})") from exc
            images.append(arr[None] if grayscale else arr.transpose(2, 0, 1))
            labels.append(label)
    if not images:
        raise InputError(f"{root}: no images found under its class subfolders")
    stack = np.stack(images)
    # Normalise with the folder's own statistics: a folder has no published mean/std.
    scaled = stack.astype(np.float32) / 255
    mean = tuple(float(v) for v in scaled.mean(axis=(0, 2, 3)))
    std = tuple(max(float(v), 1e-3) for v in scaled.std(axis=(0, 2, 3)))
    return ArrayDataset(stack, np.asarray(labels, np.int64), list(classes), mean, std, name=str(root),
                        info={"source": str(root)})


def load_dataset(spec: DataSpec, split: str) -> ArrayDataset:
    """The ``train`` or ``test`` split named by ``spec``, limited as it says."""
    if spec.source == "fashion-mnist":
        data = load_fashion_mnist(split, spec.root)
    else:
        root = Path(spec.source)
        names = ["train"] if split == "train" else ["test", "val"]
        folder = next((root / n for n in names if (root / n).is_dir()), None)
        if folder is None:
            raise InputError(f"{root}: expected a {' or '.join(n + '/' for n in names)} folder of class subfolders")
        classes = sorted(p.name for p in (root / "train").iterdir() if p.is_dir()) if (root / "train").is_dir() else None
        data = load_image_folder(folder, spec.image_size or (64, 64), spec.grayscale, classes)
        if split != "train" and (root / "train").is_dir():
            # Normalise the test split like the training split the model learned on.
            ref = load_image_folder(root / "train", spec.image_size or (64, 64), spec.grayscale, classes)
            data.mean, data.std = ref.mean, ref.std
    return data.subset(spec.train_limit if split == "train" else spec.test_limit, spec.seed)
