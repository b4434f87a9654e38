"""Tiny models and data for the distill / prune / recipe tests: built here, no downloads.

Imported by the test modules (not a conftest: tests/optimize is shared with other stages' tests).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from tests.models.tiny_torch import tiny_cnn as shared_tiny_cnn

CLASSES = ["a", "b", "c", "d"]


def tiny_cnn(num_classes: int = 4, in_channels: int = 3, width: int = 16, seed: int = 0):
    """conv(width) - conv(2*width) - conv(4*width) - pool - linear, with BatchNorm: every width a multiple of 8.

    Returned in train mode, as the training stages receive a fresh model.
    """
    return shared_tiny_cnn(num_classes, in_channels, widths=(width, 2 * width, 4 * width), strides=(1, 2, 1),
                           batchnorm=True, seed=seed).train()


def register_tiny() -> str:
    """Put tiny_cnn in the zoo (as recipes name models) and return its name."""
    from edgeship.optimize import zoo

    name = "test-tiny-cnn"
    if name not in zoo.names():
        zoo.register(name)(lambda num_classes=4, in_channels=3: tiny_cnn(num_classes, in_channels, width=8))
    return name


def synthetic(n: int = 256, size: int = 12, channels: int = 3, seed: int = 0):
    """A learnable 4-class task: each class brightens one quadrant of noisy images."""
    from edgeship.optimize.data import ArrayDataset

    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, n)
    images = rng.integers(0, 90, (n, channels, size, size)).astype(np.uint8)
    h = size // 2
    for i, y in enumerate(labels):
        r, c = divmod(int(y), 2)
        images[i, :, r * h:(r + 1) * h, c * h:(c + 1) * h] += 120
    return ArrayDataset(images, labels.astype(np.int64), list(CLASSES), mean=(0.45,) * channels,
                        std=(0.3,) * channels, name="synthetic")


def image_folder(root: Path, per_class: int = 12, size: int = 16, seed: int = 0) -> Path:
    """root/train/<class>/*.png and root/test/<class>/*.png of the synthetic task."""
    from PIL import Image

    for split, n, s in (("train", per_class * 4, seed), ("test", per_class * 2, seed + 1)):
        data = synthetic(n, size, 3, s)
        for i, (img, y) in enumerate(zip(data.images, data.labels)):
            folder = root / split / CLASSES[int(y)]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img.transpose(1, 2, 0)).save(folder / f"{i}.png")
    return root


def write_idx(path: Path, magic: int, array: np.ndarray) -> Path:
    """An idx file (gzip) as Fashion-MNIST ships them."""
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())
    return path


def fake_fashion_mnist(root: Path, n: int = 20) -> Path:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    for prefix in ("train", "t10k"):
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", 0x803, rng.integers(0, 256, (n, 28, 28)))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", 0x801, rng.integers(0, 10, n))
    return root
