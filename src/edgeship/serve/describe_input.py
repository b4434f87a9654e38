"""What a ``POST /v1/pipelines/describe`` carries: the picture and a few options, in one of three shapes.

    curl --data-binary @cat.jpg 'http://127.0.0.1:8000/v1/pipelines/describe?stream=false'
    curl -F file=@cat.jpg -F max_tokens=40 http://127.0.0.1:8000/v1/pipelines/describe
    curl -H 'content-type: application/json' -d '{"image": "<base64>", "stream": false}' .../v1/pipelines/describe

Options (query string, multipart fields or JSON members; the body's win): ``stream`` (default
true: server-sent events), ``max_tokens`` (up to the server's limit) and ``top_k`` (classes or
detections in the vision answer). The vision model is ``?model=NAME``, or the server's only one:
it must be known before the body is read, so that a full queue answers 503 without reading it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any, Mapping

from ..util import json_depth
from .errors import ApiError, UploadError
from .upload import FIELD, MAX_PARTS, multipart_fields, part_names

OPTIONS = ("stream", "max_tokens", "top_k")


@dataclass(frozen=True)
class DescribeOptions:
    stream: bool = True
    max_tokens: int | None = None
    top_k: int | None = None


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no"):
        return value.lower() in ("true", "1", "yes")
    raise ApiError(400, f"{name}: expected true or false, got {json.dumps(value)}")


def _int(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ApiError(400, f"{name}: expected an integer from {lo} to {hi}, got {json.dumps(value)}")
    return value


def options(raw: Mapping[str, Any], base: DescribeOptions | None = None) -> DescribeOptions:
    """``raw`` options over ``base``; 400 naming the option that is malformed."""
    base = base or DescribeOptions()
    stream = _bool(raw["stream"], "stream") if raw.get("stream") is not None else base.stream
    max_tokens = _int(raw["max_tokens"], "max_tokens", 1, 1 << 20) if raw.get("max_tokens") is not None \
        else base.max_tokens
    top_k = _int(raw["top_k"], "top_k", 1, 1000) if raw.get("top_k") is not None else base.top_k
    return DescribeOptions(stream, max_tokens, top_k)


def _decode_base64(text: Any) -> bytes:
    if not isinstance(text, str) or not text:
        raise UploadError(400, 'image: expected the picture as a base64 string ("image": "/9j/4AAQ...")')
    if text.startswith("data:"):  # a data URL: data:image/png;base64,....
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise UploadError(400, f"image: not valid base64 ({exc})") from None


def split_body(body: bytes, content_type: str | None, base: DescribeOptions, *, max_parts: int = MAX_PARTS,
               max_depth: int = 32) -> tuple[bytes, DescribeOptions]:
    """The picture's bytes and the options, from a JSON, multipart or raw-image body."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind == "application/json":
        if json_depth(body, max_depth) > max_depth:
            raise ApiError(400, f"the JSON body nests arrays and objects more than {max_depth} levels deep")
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the JSON body could not be parsed ({exc})") from None
        if not isinstance(doc, dict):
            raise ApiError(400, 'the JSON body must be an object: {"image": "<base64>", "stream": false, ...}')
        unknown = sorted(set(doc) - {"image", "model", *OPTIONS})
        if unknown:
            raise ApiError(400, f"unknown member {unknown[0]!r}; known: image, model, {', '.join(OPTIONS)}")
        return _decode_base64(doc.get("image")), options(doc, base)
    if kind == "multipart/form-data":
        fields = multipart_fields(body, content_type or "", max_parts)
        if FIELD not in fields:
            got = part_names(list(fields))
            raise UploadError(422, f"multipart upload has no {FIELD!r} field (fields received: {got}); send the "
                                   f"image as -F {FIELD}=@photo.jpg", "missing_field")
        raw = {k: v.decode("utf-8", "replace") for k, v in fields.items() if k in OPTIONS}
        return fields[FIELD], options(raw, base)
    return body, base


__all__ = ["DescribeOptions", "options", "split_body"]
