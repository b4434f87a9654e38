"""Calibration and evaluation inputs for quantization: real images, never random tensors.

>>> data = load_quant_data(bundle, source="photos", calibration_samples=64, eval_samples=500)
>>> data.calibration[0].shape, len(data.evaluation), data.labels is None
((3, 224, 224), 500, True)

Sources:

- ``"photos"``: the real photos installed packages ship (:func:`edgeship.photos.photos`). They are
  split by photo into a calibration half and an evaluation half, so no evaluation crop comes from a
  picture the ranges were calibrated on. Both halves are expanded into augmented crops (random
  crop, flip, colour jitter) and preprocessed as the bundle's manifest says.
- a folder of images: the same, split by file. With class subfolders whose names match the bundle's
  labels, the evaluation half keeps its labels and the gate measures real accuracy.
- ``"fashion-mnist"``: calibration from the training split, labelled evaluation from the test split.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..errors import InputError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}
CROP_AREA = (0.25, 1.0)  # fraction of the picture a random crop keeps
JITTER = 0.3  # brightness, contrast and saturation each scaled by 1 ± JITTER


@dataclass
class QuantData:
    """Preprocessed calibration inputs and disjoint evaluation inputs (labels when known)."""

    calibration: list[np.ndarray]
    evaluation: list[np.ndarray]
    labels: Union[np.ndarray, None]  # int64 [len(evaluation)] or None: gate on agreement with FP32
    info: dict[str, Any] = field(default_factory=dict)


def _files(folder: Path, what: str, hint: str = "") -> list[Path]:
    """The images under ``folder``, or InputError saying which folder (calibration/evaluation) is wrong."""
    if not folder.is_dir():
        raise InputError(f"{folder}: {what} folder not found{hint}")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"{folder}: no images in the {what} folder (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    return files


def _split(items: list, seed: int) -> tuple[list, list]:
    """Alternate after a seeded shuffle: calibration gets the even half, evaluation the odd half."""
    order = np.random.default_rng(seed).permutation(len(items))
    shuffled = [items[i] for i in order]
    return shuffled[0::2], shuffled[1::2]


def augment(image, rng: np.random.Generator):
    """A random-resized crop (CROP_AREA of the picture), a coin-flip mirror and colour jitter (± JITTER)."""
    from PIL import Image, ImageEnhance

    w, h = image.size
    for _ in range(10):
        area = w * h * rng.uniform(*CROP_AREA)
        ratio = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        cw, ch = int(round(np.sqrt(area * ratio))), int(round(np.sqrt(area / ratio)))
        if 0 < cw <= w and 0 < ch <= h:
            break
    else:
        cw, ch = w, h
    left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    out = image.crop((left, top, left + cw, top + ch))
    if rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        out = enhancer(out).enhance(float(rng.uniform(1 - JITTER, 1 + JITTER)))
    return out


def _crops(preprocessor, paths: list[Path], n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n`` augmented crops spread evenly over ``paths`` (the first crop of each is the plain picture)."""
    from ..runtime.preprocess import load_image

    images = [load_image(p) for p in paths]
    out = []
    for i in range(n):
        image = images[i % len(images)]
        view = image if i < len(images) else augment(image, rng)
        out.append(preprocessor.from_image(view)[0])
    return out


def _preprocessor(bundle):
    from ..runtime.preprocess import Preprocessor

    pre = bundle.manifest.preprocessing
    if pre is None:
        raise InputError(
            f"{bundle.name}: the bundle has no image preprocessing, so images cannot be turned into its input; "
            "use --calibration fashion-mnist for 28x28 grayscale models, or re-export with preprocessing"
        )
    return Preprocessor(pre)


def _photo_data(bundle, paths: list[Path], source: str, n_cal: int, n_eval: int, seed: int,
                labelled: dict[Path, int] | None = None) -> QuantData:
    if len(paths) < 2:
        raise InputError(
            f"{source}: found {len(paths)} image(s); calibration and evaluation need at least 2 disjoint images "
            "(put more pictures in the folder, or use --calibration photos)"
        )
    pre = _preprocessor(bundle)
    cal_paths, eval_paths = _split(paths, seed)
    rng = np.random.default_rng(seed)
    calibration = _crops(pre, cal_paths, n_cal, rng)
    labels = None
    if labelled:
        # Labelled folders: evaluate each picture once, unaugmented, with its label.
        evaluation = [pre(p)[0] for p in eval_paths]
        labels = np.asarray([labelled[p] for p in eval_paths], np.int64)
    else:
        evaluation = _crops(pre, eval_paths, n_eval, rng)
    info = {
        "source": source,
        "calibration_images": [p.name for p in cal_paths],
        "evaluation_images": [p.name for p in eval_paths],
        "calibration_samples": len(calibration),
        "evaluation_samples": len(evaluation),
        "labelled": labels is not None,
        "augmentation": None if labelled else (f"random crop {CROP_AREA[0]:.0%}-{CROP_AREA[1]:.0%} of the area, flip, "
                                               f"colour jitter ±{JITTER:.0%}"),
    }
    return QuantData(calibration, evaluation, labels, info)


def _folder_labels(folder: Path, files: list[Path], labels: list[str] | None) -> dict[Path, int] | None:
    """Class subfolders named like the bundle's labels give labels; anything else: unlabelled."""
    if not labels:
        return None
    index = {name: i for i, name in enumerate(labels)}
    out = {}
    for p in files:
        rel = p.relative_to(folder).parts
        if len(rel) != 2 or rel[0] not in index:
            return None
        out[p] = index[rel[0]]
    return out


def _fashion_mnist(bundle, n_cal: int, n_eval: int, seed: int) -> QuantData:
    from .data import load_fashion_mnist

    shape = bundle.manifest.inputs[0].shape if bundle.manifest.inputs else []
    if len(shape) != 4 or shape[1:] != [1, 28, 28]:
        raise InputError(f"{bundle.name}: fashion-mnist gives [1, 28, 28] inputs but the model takes {shape}")
    train = load_fashion_mnist("train").subset(n_cal, seed)
    test = load_fashion_mnist("test").subset(n_eval, seed + 1)
    cal_x, _ = train.batch(slice(None))
    eval_x, eval_y = test.batch(slice(None))
    info = {"source": "fashion-mnist", "calibration_samples": len(cal_x), "evaluation_samples": len(eval_x),
            "labelled": True, "calibration_split": "train", "evaluation_split": "test"}
    return QuantData(list(cal_x), list(eval_x), eval_y, info)


def load_quant_data(bundle, source: str = "photos", calibration_samples: int = 64, eval_samples: int = 500,
                    eval_source: Union[str, os.PathLike, None] = None, seed: int = 0) -> QuantData:
    """Calibration inputs and disjoint evaluation inputs for ``bundle`` from ``source``."""
    if source == "fashion-mnist":
        return _fashion_mnist(bundle, calibration_samples, eval_samples, seed)
    if source == "photos":
        from ..photos import photos

        paths = sorted(photos().values())
        data = _photo_data(bundle, paths, "photos installed packages ship", calibration_samples, eval_samples, seed)
    else:
        folder = Path(source)
        files = _files(folder, "calibration", " (give a folder of images, 'photos' or 'fashion-mnist')")
        labelled = _folder_labels(folder, files, bundle.labels)
        data = _photo_data(bundle, files, str(folder), calibration_samples, eval_samples, seed, labelled)
    if eval_source is not None:
        # A separate evaluation set replaces the held-out half of ``source``.
        folder = Path(eval_source)
        files = _files(folder, "evaluation")
        labelled = _folder_labels(folder, files, bundle.labels)
        pre = _preprocessor(bundle)
        if labelled:
            data.evaluation = [pre(p)[0] for p in files]
            data.labels = np.asarray([labelled[p] for p in files], np.int64)
        else:
            data.evaluation = _crops(pre, files, eval_samples, np.random.default_rng(seed + 1))
            data.labels = None
        data.info.update(evaluation_source=str(folder), evaluation_samples=len(data.evaluation),
                         labelled=data.labels is not None, evaluation_images=[p.name for p in files][:50])
    return data


class ArrayReader:
    """An onnxruntime CalibrationDataReader over preprocessed samples, one batch-1 feed at a time."""

    def __init__(self, input_name: str, samples: list[np.ndarray]):
        self.input_name = input_name
        self.samples = samples
        self._it = iter(samples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {self.input_name: np.ascontiguousarray(x[None], dtype=np.float32)}

    def rewind(self) -> None:
        self._it = iter(self.samples)
