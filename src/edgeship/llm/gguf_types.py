"""llama.cpp's file types (``general.file_type`` in a GGUF; ``LLAMA_FTYPE_*`` in llama.h), by name.

A light module: the CLI builds ``--type`` choices from it without importing llama.cpp.
The values are llama.h's and are part of the GGUF format, so they do not move between versions.
"""

from __future__ import annotations

import enum


class FileType(enum.IntEnum):
    """The type most weights of a GGUF are stored in (norms and some embeddings may differ)."""

    F32 = 0
    F16 = 1
    Q4_0 = 2
    Q4_1 = 3
    Q8_0 = 7
    Q5_0 = 8
    Q5_1 = 9
    Q2_K = 10
    Q3_K_S = 11
    Q3_K_M = 12
    Q3_K_L = 13
    Q4_K_S = 14
    Q4_K_M = 15
    Q5_K_S = 16
    Q5_K_M = 17
    Q6_K = 18
    IQ2_XXS = 19
    IQ2_XS = 20
    Q2_K_S = 21
    IQ3_XS = 22
    IQ3_XXS = 23
    IQ1_S = 24
    IQ4_NL = 25
    IQ3_S = 26
    IQ3_M = 27
    IQ2_S = 28
    IQ2_M = 29
    IQ4_XS = 30
    IQ1_M = 31
    BF16 = 32
    TQ1_0 = 36
    TQ2_0 = 37


# Types llama.cpp can produce without an importance matrix (the IQ1/IQ2/IQ3 family needs one, and the
# ternary TQ types only suit ternary-trained models), i.e. what `edgeship llm quantize --type` offers.
QUANTIZE_TYPES = (
    "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0",
    "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K",
    "IQ4_NL", "IQ4_XS", "F16", "BF16", "F32",
)


def file_type_name(value: int) -> str:
    """``3 -> "Q4_1"``; an unknown number is shown as ``"type 99"`` rather than failing."""
    try:
        return FileType(value).name
    except ValueError:
        return f"type {value}"


def parse_file_type(name: str) -> FileType:
    """``"q4_k_m" -> FileType.Q4_K_M``; ValueError naming the choices otherwise."""
    key = name.strip().upper()
    if key not in QUANTIZE_TYPES:
        raise ValueError(f"unknown quantization type {name!r}; choose one of {', '.join(QUANTIZE_TYPES)}")
    return FileType[key]


__all__ = ["FileType", "QUANTIZE_TYPES", "file_type_name", "parse_file_type"]
