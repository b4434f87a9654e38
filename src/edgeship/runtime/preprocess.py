"""Decode, resize, crop and normalise pictures into model inputs: float32 throughout.

>>> pre = Preprocessor(Preprocessing(size=(224, 224)))
>>> x, meta = pre("cat.jpg")           # x: float32 [3, 224, 224]; meta maps boxes back

The fast path for JPEG: the decoder is asked for a reduced-scale decode (DCT scaling,
``Image.draft``) when the photo is at least four times the size the model needs, and the
resize reads only the crop box, so one resampling makes the final tensor.

Memory is budgeted in bytes, not pixels: ``decode_cost`` says, from the header alone, what
decoding and converting a picture will allocate for its mode, size and format (16-bit and float
pictures cost 2-4 bytes a pixel as decoded, RGB 4 in Pillow, alpha needs a background), and
``max_decode_bytes`` refuses (LimitError) what is over it before a pixel is decoded. The
conversions stay within what the estimate counts: 16-bit and float pictures are scaled to 8 bits
in row blocks (never a whole-image float64 copy), alpha is composited by one paste onto a white
RGB image, grayscale stays one byte a pixel until after the resize.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Union, cast

import numpy as np

from ..bundle import Preprocessing, Resize
from ..errors import InputError, LimitError

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, "np.ndarray", Any]

DEFAULT_MAX_PIXELS = 64_000_000  # about 8000x8000; a decompression bomb guard, not a format limit
DEFAULT_MAX_DECODE_BYTES = 512 << 20  # for local files (CLI, calibration); the server sets its own

# Bytes a pixel takes in Pillow's memory, by mode (RGB is stored as 4 bytes, like RGBA).
_PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2, "BGR;15": 2, "BGR;16": 2,
                "BGR;24": 3}
_HIGH_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")
_ROWS = 64  # rows per block when scaling 16-bit and float pictures to 8 bits

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
    fp: Union[Path, IO[bytes]]
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
        fp, name = cast("IO[bytes]", src), "image stream"
    else:
        raise InputError(f"cannot read an image from {type(src).__name__}; give a path, bytes, a PIL image or an array")
    try:
        return Image.open(fp)
    except Image.DecompressionBombError as exc:
        raise InputError(f"{name}: {exc}") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        what = "truncated or corrupt image" if "runcated" in str(exc) else "not a recognised image"
        raise InputError(f"{name}: {what} ({exc}); send a complete JPEG, PNG, WebP, BMP or TIFF file") from exc


def _pixel_bytes(mode: str) -> int:
    return _PIXEL_BYTES.get(mode, 4)


def decode_cost(im, target: tuple[int, int] | None = None) -> int:
    """Bytes that decoding ``im`` (opened, header read, not loaded) and making it RGB or L will allocate at peak.

    ``target`` (width, height): the model input, for the resize's intermediate rows. Counts the
    decoded image, the decoder's own full-size buffer where it has one (WebP decodes into
    libwebp's buffer and copies; TIFF may read through a full RGBA raster), the copy EXIF
    rotation makes, and the conversion ``_to_rgb_or_l`` does for the mode.
    """
    w, h = im.size
    n = w * h
    mode = im.mode
    decoded = n * _pixel_bytes(mode)
    cost = decoded
    if im.format == "WEBP":
        # libwebp's RGBA buffer and the bytes Pillow copies it from; an RGB picture is decoded as
        # RGBA and converted (all measured: 16 bytes a pixel at peak for either).
        cost += n * (8 if mode == "RGBA" else 12)
    if mode in _HIGH_DEPTH:
        converted = n + 16 * w * _ROWS  # to L, through one block of float32 rows at a time
    elif mode in ("RGB", "L"):
        converted = 0
    elif mode == "1":
        converted = n
    elif mode == "P" and "transparency" in im.info:
        converted = 2 * n * 4  # to RGBA, then the white background
    elif mode in ("RGBA", "LA", "RGBa"):
        converted = n * 4  # the white background the picture is pasted on
    elif mode in _ALPHA:
        converted = 2 * n * 4
    else:  # P, CMYK, YCbCr, LAB, HSV ...: one conversion to RGB
        converted = n * 4
    cost += converted
    try:
        rotated = im.getexif().get(0x0112, 1) not in (None, 1)
    except Exception:  # a damaged EXIF block: decoding will say so
        rotated = False
    if rotated:
        cost += decoded
    tw = target[0] if target else w
    return cost + 4 * min(tw, w) * h


def _scaled_to_l(im):
    """A 16-bit or float picture as 8-bit L, scaled by its own range, in row blocks (no whole-image float copy)."""
    from PIL import Image

    lo, hi = im.getextrema()
    if im.mode != "F":
        lo = 0  # integer pictures: 0 stays black, the brightest pixel becomes 255
    span = float(hi - lo) or 1.0
    w, h = im.size
    out = np.empty((h, w), dtype=np.uint8)
    for top in range(0, h, _ROWS):
        block = np.array(im.crop((0, top, w, min(h, top + _ROWS))), dtype=np.float32)  # a copy: scaled in place
        block -= lo
        block *= 255.0 / span
        np.clip(block, 0, 255, out=block)
        out[top:top + block.shape[0]] = block
    # Shares ``out``'s memory (one byte a pixel, as the estimate counts) instead of copying it.
    return Image.frombuffer("L", (w, h), out, "raw", "L", 0, 1)


def _to_rgb_or_l(im):
    """Any PIL mode to 8-bit RGB, or L for one-channel pictures: palette, 16-bit, float, CMYK, alpha (on white)."""
    from PIL import Image

    mode = im.mode
    if mode in ("RGB", "L"):
        return im
    if mode in _HIGH_DEPTH:
        return _scaled_to_l(im)
    if mode == "1":
        return im.convert("L")
    if mode == "P" and "transparency" in im.info:
        im, mode = im.convert("RGBA"), "RGBA"
    if mode in _ALPHA:
        if mode not in ("RGBA", "LA", "RGBa"):
            im = im.convert("RGBA")
        background = Image.new("RGB", im.size, (255, 255, 255))
        background.paste(im, mask=im)  # the alpha band as the mask: composited on white, no extra copy
        return background
    return im.convert("RGB")


def _to_rgb(im):
    """Any PIL mode to 8-bit RGB (see ``_to_rgb_or_l``)."""
    im = _to_rgb_or_l(im)
    return im if im.mode == "RGB" else im.convert("RGB")


def _check_budget(im, max_pixels: int | None, max_decode_bytes: int | None, target=None) -> None:
    w, h = im.size
    if max_pixels is not None and w * h > max_pixels:
        raise LimitError(
            f"image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,}; resize it before sending"
        )
    if max_decode_bytes is not None:
        cost = decode_cost(im, target)
        if cost > max_decode_bytes:
            raise LimitError(
                f"image is {w}x{h} {im.format or ''} {im.mode}: decoding it needs {cost / 2**20:.0f} MiB, over the "
                f"budget of {max_decode_bytes / 2**20:.0f} MiB; send a smaller picture (or JPEG, which decodes at "
                "reduced scale)"
            )


def load_image(src: ImageSource, max_pixels: int | None = DEFAULT_MAX_PIXELS, draft_to: tuple[int, int] | None = None,
               max_decode_bytes: int | None = DEFAULT_MAX_DECODE_BYTES):
    """Decode ``src`` to an RGB PIL image with EXIF orientation applied.

    ``draft_to`` lets the JPEG decoder scale down by 1/2, 1/4 or 1/8 while staying at least that size.
    Truncated, corrupt and oversized images (pixels, or bytes to decode: ``decode_cost``) raise
    InputError (LimitError for the limits) before a pixel buffer is allocated.
    """
    if isinstance(src, np.ndarray):
        return _array_to_image(src)
    return _to_rgb(_decode(_open(src), max_pixels, draft_to, max_decode_bytes))


def _decode(im, max_pixels: int | None, draft_to: tuple[int, int] | None, max_decode_bytes: int | None,
            target: tuple[int, int] | None = None):
    """Load an opened image within the budgets, EXIF-rotated, as RGB or L."""
    from PIL import Image, ImageOps

    error: Exception | None = None
    try:
        if draft_to is not None and im.format == "JPEG":
            im.draft("RGB", draft_to)
        _check_budget(im, max_pixels, max_decode_bytes, target)
        im.load()
        # In place: without it Pillow returns a copy of the whole picture even when nothing turns.
        ImageOps.exif_transpose(im, in_place=True)
        return _to_rgb_or_l(im)
    except Image.DecompressionBombError as exc:
        error = LimitError(str(exc))
    except (OSError, ValueError, SyntaxError) as exc:
        if isinstance(exc, InputError):
            raise
        error = InputError(f"image data is truncated or corrupt ({exc}); send the complete file")
    finally:
        if error is not None:
            im.close()
    # Raised here, outside the except block, so that it does not chain Pillow's exception: that
    # one's traceback holds the decoder, which holds the pixels (a truncated 16-bit PNG: 32 MB)
    # for as long as anything holds this error.
    raise error


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

    def __init__(self, spec: Preprocessing, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 max_decode_bytes: int | None = DEFAULT_MAX_DECODE_BYTES):
        self.spec = spec
        self.max_pixels = max_pixels
        self.max_decode_bytes = max_decode_bytes
        std = np.asarray(spec.std, dtype=np.float32)
        # (x * scale - mean) / std == x * a + b, one fused multiply-add per pixel
        self._a = (np.float32(spec.scale) / std).astype(np.float32)
        self._b = (-np.asarray(spec.mean, dtype=np.float32) / std).astype(np.float32)
        self._filter = _FILTERS[spec.interpolation]

    def _draft_size(self, w: int, h: int) -> tuple[int, int] | None:
        s = self.spec
        th, tw = s.size
        if s.resize is Resize.SHORT_SIDE_CROP:
            assert s.resize_to is not None  # PreprocessSpec requires it for SHORT_SIDE_CROP
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
        """Decoded image (RGB, or L for one-channel pictures), using the reduced-scale JPEG decode when large."""
        from PIL import Image

        if isinstance(src, (Image.Image, np.ndarray)):
            return load_image(src, self.max_pixels, max_decode_bytes=self.max_decode_bytes)
        im = _open(src)
        w, h = im.size
        if self.max_pixels is not None and w * h > self.max_pixels:
            raise LimitError(
                f"image is {w}x{h} = {w * h:,} pixels, over the limit of {self.max_pixels:,}; resize it before sending"
            )
        th, tw = self.spec.size
        return _decode(im, self.max_pixels, self._draft_size(w, h), self.max_decode_bytes, (tw, th))

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
            canvas = Image.new(im.mode, (tw, th), (s.pad_value,) * 3 if im.mode == "RGB" else s.pad_value)
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
        elif im.mode != "RGB":  # a grayscale picture stays L through the resize, where it is 4x smaller
            im = im.convert("RGB")
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
