"""Decode, resize, crop and normalise pictures into model inputs: float32 throughout.

>>> pre = Preprocessor(Preprocessing(size=(224, 224)))
>>> x, meta = pre("cat.jpg")           # x: float32 [3, 224, 224]; meta maps boxes back

The fast path for JPEG: the decoder is asked for a reduced-scale decode (DCT scaling,
``Image.draft``) when the photo is at least four times the size the model needs, and the
resize reads only the crop box, so one resampling makes the final tensor.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from ..bundle import Preprocessing, Resize
from ..errors import InputError

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, "np.ndarray", Any]

DEFAULT_MAX_PIXELS = 64_000_000  # about 8000x8000; a decompression bomb guard, not a format limit

_FILTERS = {"bilinear": 2, "bicubic": 3, "nearest": 0, "lanczos": 1}  # PIL.Image.Resampling values


@dataclass(frozen=True)
class ImageMeta:
    """Where the model input came from: to map boxes back to the original picture."""

    width: int  # original, after EXIF orientation
    height: int
    scale_x: float = 1.0  # model pixels per original pixel
    scale_y: float = 1.0
    pad_x: float = 0.0  # model pixels of padding (letterbox) or crop offset (negative)
    pad_y: float = 0.0

    def to_original(self, boxes: np.ndarray) -> np.ndarray:
        """Map [N, 4] x1,y1,x2,y2 boxes in model pixels to original image pixels (clipped)."""
        out = boxes.astype(np.float32, copy=True)
        out[:, [0, 2]] = (out[:, [0, 2]] - self.pad_x) / self.scale_x
        out[:, [1, 3]] = (out[:, [1, 3]] - self.pad_y) / self.scale_y
        out[:, [0, 2]] = out[:, [0, 2]].clip(0, self.width)
        out[:, [1, 3]] = out[:, [1, 3]].clip(0, self.height)
        return out


def _open(src: ImageSource):
    from PIL import Image

    if isinstance(src, Image.Image):
        return src
    if isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise InputError("empty image: 0 bytes received; send a JPEG, PNG, WebP, BMP or TIFF file")
        fp = io.BytesIO(bytes(src))
        name = "image bytes"
    elif isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.is_file():
            raise InputError(f"{path}: no such image file")
        fp, name = path, str(path)
    elif hasattr(src, "read"):
        fp, name = src, "image stream"
    else:
        raise InputError(f"cannot read an image from {type(src).__name__}; give a path, bytes, a PIL image or an array")
    try:
        return Image.open(fp)
    except Image.DecompressionBombError as exc:
        raise InputError(f"{name}: {exc}") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        what = "truncated or corrupt image" if "runcated" in str(exc) else "not a recognised image"
        raise InputError(f"{name}: {what} ({exc}); send a complete JPEG, PNG, WebP, BMP or TIFF file") from exc


def _to_rgb(im):
    """Any PIL mode to 8-bit RGB: palette, grayscale, 16-bit, CMYK, alpha (composited on white)."""
    from PIL import Image

    mode = im.mode
    if mode == "RGB":
        return im
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im, dtype=np.float64)
        hi = arr.max() or 1.0
        return Image.fromarray((arr * (255.0 / hi)).astype(np.uint8), "L").convert("RGB")
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        lo, hi = arr.min(), arr.max()
        arr = (arr - lo) * (255.0 / ((hi - lo) or 1.0))
        return Image.fromarray(arr.astype(np.uint8), "L").convert("RGB")
    if mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        im = im.convert("RGBA")
        background = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, im).convert("RGB")
    return im.convert("RGB")


def load_image(src: ImageSource, max_pixels: int | None = DEFAULT_MAX_PIXELS, draft_to: tuple[int, int] | None = None):
    """Decode ``src`` to an RGB PIL image with EXIF orientation applied.

    ``draft_to`` lets the JPEG decoder scale down by 1/2, 1/4 or 1/8 while staying at least that size.
    Truncated, corrupt and oversized images raise InputError before a pixel buffer is allocated.
    """
    from PIL import Image, ImageOps

    if isinstance(src, np.ndarray):
        return _array_to_image(src)
    im = _open(src)
    w, h = im.size
    if max_pixels is not None and w * h > max_pixels:
        raise InputError(
            f"image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,}; resize it before sending"
        )
    try:
        if draft_to is not None and im.format == "JPEG":
            im.draft("RGB", draft_to)
        im.load()
        im = ImageOps.exif_transpose(im)
        return _to_rgb(im)
    except Image.DecompressionBombError as exc:
        raise InputError(str(exc)) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise InputError(f"image data is truncated or corrupt ({exc}); send the complete file") from exc


def _array_to_image(arr: np.ndarray):
    from PIL import Image

    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise InputError(
            f"an image array must be uint8 HxW, HxWx1, HxWx3 (RGB) or HxWx4; got {arr.dtype} {list(arr.shape)}"
        )
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    return _to_rgb(Image.fromarray(np.ascontiguousarray(arr)))


class Preprocessor:
    """Turns pictures into the input a bundle's model expects, as its manifest says."""

    def __init__(self, spec: Preprocessing, max_pixels: int | None = DEFAULT_MAX_PIXELS):
        self.spec = spec
        self.max_pixels = max_pixels
        std = np.asarray(spec.std, dtype=np.float32)
        # (x * scale - mean) / std == x * a + b, one fused multiply-add per pixel
        self._a = (np.float32(spec.scale) / std).astype(np.float32)
        self._b = (-np.asarray(spec.mean, dtype=np.float32) / std).astype(np.float32)
        self._filter = _FILTERS[spec.interpolation]

    def _draft_size(self, w: int, h: int) -> tuple[int, int] | None:
        s = self.spec
        th, tw = s.size
        if s.resize is Resize.SHORT_SIDE_CROP:
            k = s.resize_to / min(w, h)
        elif s.resize is Resize.LETTERBOX:
            k = min(th / h, tw / w)
        elif s.resize is Resize.DIRECT:
            return (tw, th)
        else:
            return None
        # Keep twice the needed resolution: the DCT-scaled decode then only replaces the first
        # halvings of the resize, so results stay close to a full decode.
        return (max(1, math.ceil(2 * w * k)), max(1, math.ceil(2 * h * k)))

    def image(self, src: ImageSource):
        """Decoded RGB image, using the reduced-scale JPEG decode when the photo is large."""
        from PIL import Image

        if isinstance(src, (Image.Image, np.ndarray)):
            return load_image(src, self.max_pixels)
        im = _open(src)
        w, h = im.size
        if self.max_pixels is not None and w * h > self.max_pixels:
            raise InputError(
                f"image is {w}x{h} = {w * h:,} pixels, over the limit of {self.max_pixels:,}; resize it before sending"
            )
        return load_image(im, self.max_pixels, draft_to=self._draft_size(w, h))

    def __call__(self, src: ImageSource) -> tuple[np.ndarray, ImageMeta]:
        im = self.image(src)
        return self.from_image(im)

    def from_image(self, im) -> tuple[np.ndarray, ImageMeta]:
        from PIL import Image

        s = self.spec
        th, tw = s.size
        w, h = im.size
        if s.resize is Resize.SHORT_SIDE_CROP:
            k = s.resize_to / min(w, h)  # model pixels per source pixel
            cw, ch = tw / k, th / k  # crop box in source pixels
            left, top = (w - cw) / 2, (h - ch) / 2
            im = im.resize((tw, th), self._filter, box=(left, top, left + cw, top + ch))
            meta = ImageMeta(w, h, k, k, -left * k, -top * k)
        elif s.resize is Resize.DIRECT:
            im = im.resize((tw, th), self._filter)
            meta = ImageMeta(w, h, tw / w, th / h)
        elif s.resize is Resize.LETTERBOX:
            k = min(th / h, tw / w)
            nw, nh = max(1, round(w * k)), max(1, round(h * k))
            canvas = Image.new("RGB", (tw, th), (s.pad_value,) * 3)
            px, py = (tw - nw) // 2, (th - nh) // 2
            canvas.paste(im.resize((nw, nh), self._filter), (px, py))
            im = canvas
            meta = ImageMeta(w, h, nw / w, nh / h, px, py)
        else:
            if (w, h) != (tw, th):
                raise InputError(f"image is {w}x{h} but this model takes exactly {tw}x{th} and does not resize")
            meta = ImageMeta(w, h)
        if s.color == "L":
            im = im.convert("L")
        return self.normalize(np.asarray(im, dtype=np.uint8)), meta

    def normalize(self, hwc: np.ndarray) -> np.ndarray:
        """uint8 HxWx3 RGB (or HxW gray) → float32 CHW or HWC, colour order and mean/std applied."""
        if hwc.ndim == 2:
            hwc = hwc[:, :, None]
        if self.spec.color == "BGR":
            hwc = hwc[:, :, ::-1]
        if self.spec.layout == "NCHW":
            channels = hwc.shape[2]
            out = np.empty((channels, *hwc.shape[:2]), dtype=np.float32)
            for c in range(channels):
                np.multiply(hwc[:, :, c], self._a[c], out=out[c], dtype=np.float32)
                out[c] += self._b[c]
            return out
        out = hwc.astype(np.float32)
        out *= self._a
        out += self._b
        return out
