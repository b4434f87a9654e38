"""Upload validation: size limit while reading, type from the bytes, pixel count from the header.

>>> body = await read_body(request, limit=10 << 20)          # 413 past the limit, nothing more read
>>> data = image_bytes(body, request.headers.get("content-type"))  # multipart field "file" or raw (<= 16 parts)
>>> check_image(data, max_pixels=25_000_000)                 # 415 / 413 / 400, before decoding

The declared content type is never trusted: a text file sent as ``image/jpeg`` is a 415.
"""

from __future__ import annotations

import io

from starlette.requests import ClientDisconnect, Request

from .errors import ApiError, UploadError

FIELD = "file"
ACCEPTED = "JPEG, PNG, WebP, GIF, BMP or TIFF"
MAX_PARTS = 16
MAX_PART_HEADER_BYTES = 8 << 10


def sniff(data: bytes) -> str | None:
    """The image format from the first bytes, or None when they are no image edgeship reads."""
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:2] == b"BM" and len(data) >= 26:
        return "BMP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return None


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing (413) as soon as it exceeds ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise UploadError(413, f"upload is {int(declared):,} bytes, over the limit of {limit:,} bytes")
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise UploadError(413, f"upload is over the limit of {limit:,} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ApiError(400, "the client disconnected before the upload was complete") from None
    return b"".join(chunks)


class _TooMany(Exception):
    """Private: stops the multipart parser's callbacks at the part limit; caught in this module and
    answered as an UploadError (413)."""


def _multipart_field(body: bytes, boundary: bytes, field: str, max_parts: int = MAX_PARTS) -> tuple[bytes | None, list[str]]:
    """The data of part ``field`` and the names of the parts, refusing (413) more than ``max_parts`` parts."""
    parts = _multipart_parts(body, boundary, max_parts, hint=f"send the image as the one part {field!r}")
    names = [n for n, _ in parts]
    for name, data in parts:
        if name == field:
            return data, names
    return None, names


def multipart_fields(body: bytes, content_type: str, max_parts: int = MAX_PARTS) -> dict[str, bytes]:
    """Every field of a multipart/form-data body by name (the first of a repeated name)."""
    from python_multipart.multipart import parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise UploadError(400, "multipart/form-data without a boundary parameter")
    out: dict[str, bytes] = {}
    for name, data in _multipart_parts(body, boundary, max_parts):
        out.setdefault(name, data)
    return out


def _multipart_parts(body: bytes, boundary: bytes, max_parts: int = MAX_PARTS, hint: str = "") -> list[tuple[str, bytes]]:
    """(name, data) of each part, refusing (413) more than ``max_parts`` parts or oversized part headers."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    parts: list[tuple[str, list[bytes]]] = []
    state: dict = {"field": b"", "value": b"", "name": None, "data": None, "header_bytes": 0}

    def count(n: int) -> None:
        state["header_bytes"] += n
        if state["header_bytes"] > MAX_PART_HEADER_BYTES:
            raise UploadError(413, f"a multipart part's headers are over {MAX_PART_HEADER_BYTES:,} bytes")

    def on_part_begin() -> None:
        if len(parts) >= max_parts:
            raise _TooMany()
        state["header_bytes"] = 0

    def on_header_field(data: bytes, start: int, end: int) -> None:
        count(end - start)
        state["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        count(end - start)
        state["value"] += data[start:end]

    def on_header_end() -> None:
        if state["field"].lower() == b"content-disposition":
            _, params = parse_options_header(state["value"])
            state["name"] = params.get(b"name", b"").decode("utf-8", "replace")
        state["field"], state["value"] = b"", b""

    def on_headers_finished() -> None:
        state["data"] = []
        parts.append((state["name"] or "", state["data"]))
        state["name"] = None

    def on_part_data(data: bytes, start: int, end: int) -> None:
        state["data"].append(data[start:end])

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
        "on_header_end": on_header_end, "on_headers_finished": on_headers_finished, "on_part_data": on_part_data,
    })
    try:
        parser.write(body)
        parser.finalize()
    except _TooMany:
        raise UploadError(413, f"multipart upload has more than {max_parts} parts" + (f"; {hint}" if hint else "")) from None
    except UploadError:
        raise
    except Exception as exc:  # python_multipart raises MultipartParseError / its own ValueErrors
        raise UploadError(400, f"malformed multipart body ({str(exc)[:200]})") from exc
    return [(name, b"".join(data)) for name, data in parts]


def part_names(names: list[str], shown: int = 5) -> str:
    """Part names for a message: a few, each cut short (a client chose them; the message is echoed and logged)."""
    if not names:
        return "none"
    out = ", ".join(repr(n if len(n) <= 40 else n[:37] + "...") for n in names[:shown])
    return out + (f" and {len(names) - shown} more" if len(names) > shown else "")


def image_bytes(body: bytes, content_type: str | None, field: str = FIELD, max_parts: int = MAX_PARTS) -> bytes:
    """The image in a request: the multipart field ``field``, or the whole body otherwise."""
    if content_type and content_type.lower().lstrip().startswith("multipart/form-data"):
        from python_multipart.multipart import parse_options_header

        _, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if not boundary:
            raise UploadError(400, "multipart/form-data without a boundary parameter")
        if len(boundary) > 200:  # RFC 2046: at most 70 characters
            raise UploadError(400, "multipart boundary is over 200 characters")
        data, names = _multipart_field(body, boundary, field, max_parts)
        if data is None:
            raise UploadError(
                422, f"multipart upload has no {field!r} field (fields received: {part_names(names)}); "
                f"send the image as -F {field}=@photo.jpg", "missing_field",
            )
        return data
    return body


def check_image(data: bytes, max_pixels: int) -> str:
    """Refuse what must not reach the decoder; returns the sniffed format.

    Reads only the header (PIL opens lazily), so a 20000x20000 PNG costs a few microseconds.
    """
    if not data:
        raise UploadError(400, f"empty upload: 0 bytes received; send a {ACCEPTED} file", "empty_upload")
    fmt = sniff(data)
    if fmt is None:
        raise UploadError(415, f"the upload is not an image (its bytes match no {ACCEPTED} signature)")
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
    except Image.DecompressionBombError as exc:
        raise UploadError(413, f"image has too many pixels: {exc}", "image_too_large") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise UploadError(400, f"{fmt} data is truncated or corrupt ({exc}); send the complete file", "corrupt_image") from exc
    if w * h > max_pixels:
        raise UploadError(
            413, f"image is {w}x{h} = {w * h:,} pixels, over the limit of {max_pixels:,}; resize it before sending",
            "image_too_large",
        )
    return fmt
