"""Decode memory as hostile input: a budget in bytes, checked from the header, and conversions that stay in it.

16-bit, float and alpha pictures used to go through whole-image float64 or RGBA copies (a 7 MB
16-bit PNG cost 240 MB). The peak is measured here as the RSS high-water mark of a fresh process
(memory, not time), against the estimate ``decode_cost`` makes from the header.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import edgeship  # noqa: E402
from edgeship.bundle import Preprocessing
from edgeship.errors import InputError
from edgeship.runtime.preprocess import Preprocessor, load_image

SRC = str(Path(edgeship.__file__).resolve().parents[1])  # the edgeship under test, for the subprocess


def _smooth(w: int, h: int, bands: int = 4, seed: int = 0) -> np.ndarray:
    small = np.random.default_rng(seed).integers(0, 255, (h // 16 + 1, w // 16 + 1, bands), dtype=np.uint8)
    out = np.asarray(Image.fromarray(small[:, :, 0] if bands == 1 else small).resize((w, h), Image.BILINEAR))
    return out[:, :, None] if bands == 1 else out


def _encode(im: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def _sixteen_bit(w: int, h: int) -> Image.Image:
    return Image.fromarray(_smooth(w, h, 1)[:, :, 0].astype(np.uint16) * 257)


def test_the_budget_refuses_from_the_header_naming_the_cost():
    from edgeship.errors import LimitError

    data = _encode(_sixteen_bit(2000, 1500))
    pre = Preprocessor(Preprocessing(size=(32, 32), resize_to=36), max_decode_bytes=4 << 20)
    with pytest.raises(LimitError, match=r"decoding it needs \d+ MiB, over the budget of 4 MiB"):
        pre(data)
    assert isinstance(LimitError("x"), InputError)
    x, _ = Preprocessor(Preprocessing(size=(32, 32), resize_to=36), max_decode_bytes=64 << 20)(data)
    assert x.shape == (3, 32, 32)


def test_jpeg_is_budgeted_at_its_reduced_decode():
    data = _encode(Image.fromarray(_smooth(4000, 3000, 3)), "JPEG")
    # 4000x3000 RGB is 46 MiB at full size; decoded at 1/8 for a 32x32 model it is under 1 MiB
    pre = Preprocessor(Preprocessing(size=(32, 32), resize_to=36), max_decode_bytes=4 << 20)
    assert pre(data)[0].shape == (3, 32, 32)


@pytest.mark.parametrize("mode", ["I;16", "F", "RGBA", "LA", "P-transparent"])
def test_conversions_match_the_whole_image_arithmetic(mode):
    rgba = _smooth(97, 61)
    if mode == "I;16":
        arr = rgba[:, :, 0].astype(np.uint16) * 200
        im = Image.fromarray(arr)
        want = (arr.astype(np.float64) * (255.0 / arr.max())).astype(np.uint8)
        want = np.repeat(want[:, :, None], 3, 2)
    elif mode == "F":
        arr = rgba[:, :, 0].astype(np.float32) / 7 - 3
        im = Image.fromarray(arr)
        a = arr.astype(np.float64)
        want = np.repeat(((a - a.min()) * (255.0 / (a.max() - a.min()))).astype(np.uint8)[:, :, None], 3, 2)
    else:
        im = Image.fromarray(rgba, "RGBA")
        if mode == "LA":
            im = im.convert("LA")
        elif mode == "P-transparent":
            im = im.convert("P")
            im.info["transparency"] = 0
        ref = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        want = np.asarray(Image.alpha_composite(white, ref).convert("RGB"))
    got = np.asarray(load_image(im, max_decode_bytes=None))
    assert got.shape == want.shape
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1


_PEAK = textwrap.dedent("""
    import io, json, resource, sys
    sys.path.insert(0, sys.argv[1])
    from PIL import Image
    from edgeship.bundle import Preprocessing
    from edgeship.runtime.preprocess import Preprocessor
    data = open(sys.argv[2], "rb").read()
    pre = Preprocessor(Preprocessing(size=(32, 32), resize_to=36), max_pixels=None)
    pre.max_decode_bytes = None
    pre(open(sys.argv[2] + ".small", "rb").read())  # libraries loaded and warm
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    pre(data)
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
    print(json.dumps({"peak": peak}))
""")


@pytest.mark.parametrize("mode", ["I;16", "F", "RGBA"])
def test_peak_decode_memory_stays_within_the_estimate(tmp_path, mode):
    w, h = 2400, 1600
    if mode == "I;16":
        im, small = _sixteen_bit(w, h), _sixteen_bit(64, 64)
    elif mode == "F":
        im = Image.fromarray(_smooth(w, h, 1)[:, :, 0].astype(np.float32))
        small = Image.fromarray(np.ones((64, 64), np.float32))
    else:
        im, small = Image.fromarray(_smooth(w, h), "RGBA"), Image.fromarray(_smooth(64, 64), "RGBA")
    fmt = "TIFF" if mode == "F" else "PNG"
    path = tmp_path / "picture"
    kw = {"compress_level": 1} if fmt == "PNG" else {}
    im.save(path, fmt, **kw)
    small.save(str(path) + ".small", fmt)
    out = subprocess.run([sys.executable, "-c", _PEAK, SRC, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    from edgeship.runtime.preprocess import decode_cost

    peak = json.loads(out.stdout)["peak"]
    estimate = decode_cost(Image.open(path), (32, 32))
    # 3.8 MP: the float64 route cost 8-16 bytes a pixel (30-60 MB more than the estimate)
    assert peak <= estimate + (8 << 20), (peak, estimate)
