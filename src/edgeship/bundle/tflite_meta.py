"""What a ``.tflite`` file says about itself: TFLite metadata and the files zipped onto its end.

>>> meta = read_tflite_metadata("efficientnet_lite0.tflite")
>>> meta.name, meta.mean, meta.std, len(meta.labels)
('EfficientNet-lite0 image classifier (quantized)', [127.0], [128.0], 1000)

The model is a FlatBuffer whose ``metadata`` list may hold a ``TFLITE_METADATA`` buffer: another
FlatBuffer (schema ``metadata_schema.fbs``) with the model's name, each input's normalization
(mean, std) and the names of associated files such as the label list. Those files are a zip
appended to the model, which ``zipfile`` reads in place. Only the fields edgeship uses are read,
by their slot numbers in the published schemas, with the ``flatbuffers`` runtime.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from ..errors import BundleError

# Slots (field order) in schema.fbs and metadata_schema.fbs.
_MODEL_METADATA, _MODEL_BUFFERS = 6, 4
_META_NAME, _META_BUFFER = 0, 1
_BUFFER_DATA = 0
_MM_NAME, _MM_DESCRIPTION, _MM_SUBGRAPHS, _MM_FILES = 0, 1, 3, 6
_SG_INPUTS, _SG_OUTPUTS = 2, 3
_TM_PROCESS_UNITS, _TM_FILES = 4, 6
_PU_TYPE, _PU_OPTIONS = 0, 1
_NORMALIZATION = 1  # ProcessUnitOptions.NormalizationOptions
_AF_NAME, _AF_TYPE = 0, 2
_TENSOR_AXIS_LABELS = 2


@dataclass
class TFLiteMetadata:
    name: Union[str, None] = None
    description: Union[str, None] = None
    mean: Union[list[float], None] = None  # the first input's normalization, when declared
    std: Union[list[float], None] = None
    label_file: Union[str, None] = None  # the first output's TENSOR_AXIS_LABELS file
    labels: Union[list[str], None] = None
    files: list[str] = field(default_factory=list)  # names in the appended zip


class _Reader:
    """Just enough of a FlatBuffer table reader (the flatbuffers package's Table)."""

    def __init__(self, buf: bytearray, pos: int | None = None):
        import flatbuffers
        from flatbuffers.table import Table

        if pos is None:
            pos = flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0)
        self.t = Table(buf, pos)

    def _off(self, slot: int) -> int:
        return self.t.Offset(4 + 2 * slot)

    def string(self, slot: int) -> str | None:
        o = self._off(slot)
        return self.t.String(o + self.t.Pos).decode("utf-8", "replace") if o else None

    def scalar(self, slot: int, flags) -> int | float | None:
        o = self._off(slot)
        return self.t.Get(flags, o + self.t.Pos) if o else None

    def table(self, slot: int) -> "_Reader | None":
        o = self._off(slot)
        return _Reader(self.t.Bytes, self.t.Indirect(o + self.t.Pos)) if o else None

    def tables(self, slot: int) -> list["_Reader"]:
        o = self._off(slot)
        if not o:
            return []
        start, n = self.t.Vector(o), self.t.VectorLen(o)
        return [_Reader(self.t.Bytes, self.t.Indirect(start + 4 * i)) for i in range(n)]

    def floats(self, slot: int) -> list[float]:
        import flatbuffers.number_types as N

        o = self._off(slot)
        if not o:
            return []
        start, n = self.t.Vector(o), self.t.VectorLen(o)
        return [self.t.Get(N.Float32Flags, start + 4 * i) for i in range(n)]

    def bytes(self, slot: int) -> bytes:
        o = self._off(slot)
        if not o:
            return b""
        start, n = self.t.Vector(o), self.t.VectorLen(o)
        return bytes(self.t.Bytes[start : start + n])


def _metadata_buffer(buf: bytearray) -> bytes | None:
    import flatbuffers.number_types as N

    model = _Reader(buf)
    for entry in model.tables(_MODEL_METADATA):
        if entry.string(_META_NAME) == "TFLITE_METADATA":
            index = entry.scalar(_META_BUFFER, N.Uint32Flags)
            buffers = model.tables(_MODEL_BUFFERS)
            if index is not None and index < len(buffers):
                return buffers[int(index)].bytes(_BUFFER_DATA) or None
    return None


def read_tflite_metadata(path: Union[str, Path]) -> TFLiteMetadata:
    """The metadata and appended labels of a .tflite file (fields left None where absent)."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    if data[4:8] != b"TFL3":
        raise BundleError(f"{path}: not a TFLite model (no TFL3 identifier)")
    meta = TFLiteMetadata()
    try:
        raw = _metadata_buffer(data)
    except Exception as exc:  # a malformed FlatBuffer: report it as no metadata, never crash
        raw, meta.description = None, f"unreadable metadata ({type(exc).__name__})"
    if raw:
        import flatbuffers.number_types as N

        mm = _Reader(bytearray(raw))
        meta.name, meta.description = mm.string(_MM_NAME), mm.string(_MM_DESCRIPTION)
        subgraphs = mm.tables(_MM_SUBGRAPHS)
        if subgraphs:
            inputs, outputs = subgraphs[0].tables(_SG_INPUTS), subgraphs[0].tables(_SG_OUTPUTS)
            for unit in (inputs[0].tables(_TM_PROCESS_UNITS) if inputs else []):
                if unit.scalar(_PU_TYPE, N.Uint8Flags) == _NORMALIZATION:
                    opts = unit.table(_PU_OPTIONS)
                    if opts is not None:
                        meta.mean, meta.std = opts.floats(0) or None, opts.floats(1) or None
            for f in (outputs[0].tables(_TM_FILES) if outputs else []):
                if f.scalar(_AF_TYPE, N.Int8Flags) == _TENSOR_AXIS_LABELS:
                    meta.label_file = f.string(_AF_NAME)
                    break
    try:
        with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
            meta.files = z.namelist()
            name = meta.label_file if meta.label_file in meta.files else next(
                (n for n in meta.files if "label" in n.lower() and n.endswith(".txt")), None)
            if name is not None:
                meta.label_file = name
                text = z.read(name).decode("utf-8", "replace")
                meta.labels = [line.strip() for line in text.splitlines() if line.strip()]
    except zipfile.BadZipFile:
        pass  # no files appended
    return meta
