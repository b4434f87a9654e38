"""Upload validation without a server: signatures, the pixel guard before decoding, multipart."""

from __future__ import annotations

import struct
import time
import zlib

import pytest

pytest.importorskip("starlette")

from edgeship.serve.errors import UploadError  # noqa: E402
from edgeship.serve.upload import check_image, image_bytes, sniff  # noqa: E402
from tests.serve.support import encode, picture  # noqa: E402


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height, with one tiny IDAT: decoding it would fail as truncated."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
def test_sniff_knows_the_formats(fmt):
    assert sniff(encode(picture(), fmt)) == fmt


def test_sniff_rejects_text():
    assert sniff(b"hello, I am a text file") is None
    with pytest.raises(UploadError) as e:
        check_image(b"hello, I am a text file", 10_000)
    assert e.value.status == 415


def test_pixel_guard_fires_before_decoding():
    data = png_header_only(20000, 20000)
    assert len(data) < 200
    t0 = time.perf_counter()
    with pytest.raises(UploadError) as e:
        check_image(data, 25_000_000)
    assert e.value.status == 413 and "pixels" in e.value.message
    assert time.perf_counter() - t0 < 0.5  # a decode of 400 MP would take seconds and 1.2 GB
    # Under PIL's own bomb limit, edgeship's limit decides (still from the header alone).
    with pytest.raises(UploadError) as e:
        check_image(png_header_only(6000, 5000), 25_000_000)
    assert e.value.status == 413 and "6000x5000" in e.value.message


def test_truncated_and_empty():
    jpg = encode(picture(200, 150), "JPEG")
    with pytest.raises(UploadError) as e:
        check_image(b"", 10**6)
    assert e.value.status == 400
    check_image(jpg[: len(jpg) // 2], 10**6)  # the header is intact: caught later, at decode (see the server tests)
    with pytest.raises(UploadError) as e:
        check_image(jpg[:10], 10**6)
    assert e.value.status == 400


def test_multipart_field_and_missing_field():
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n"
            b"--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n"
            b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xffDATA\r\n--XyZ--\r\n")
    assert image_bytes(body, "multipart/form-data; boundary=XyZ") == b"\xff\xd8\xffDATA"
    with pytest.raises(UploadError) as e:
        image_bytes(body, "multipart/form-data; boundary=XyZ", field="image")
    assert e.value.status == 422 and "'note'" in e.value.message and "'file'" in e.value.message
    with pytest.raises(UploadError) as e:
        image_bytes(body, "multipart/form-data")
    assert e.value.status == 400
    assert image_bytes(b"raw", "image/png") == b"raw"
