"""Find the GGUF file behind what the user named: a ``.gguf`` file, or a bundle (folder or .tar) holding one.

>>> resolve_gguf("smollm2/")          # a bundle folder
(PosixPath('smollm2/model.gguf'), 'smollm2')
>>> resolve_gguf("SmolLM2.Q4_0.gguf")  # a bare file: the name is the file stem
(PosixPath('SmolLM2.Q4_0.gguf'), 'SmolLM2.Q4_0')
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError

def resolve_gguf(model: str | os.PathLike) -> tuple[Path, str]:
    """(path of the .gguf, model name); InputError when the bundle holds another format."""
    from ..bundle import Format, open_bundle

    bundle = open_bundle(model)
    if bundle.manifest.format is not Format.GGUF:
        raise InputError(
            f"{model}: holds a {bundle.manifest.format.value} model; `edgeship llm` commands take a "
            ".gguf file or a bundle made from one"
        )
    return bundle.model_path, bundle.name


def bundle_sha256(model: str | os.PathLike) -> str | None:
    """The model file's sha256 recorded in a bundle's manifest, or None for a bare file."""
    from ..bundle import open_bundle

    bundle = open_bundle(model, verify=False)
    return bundle.manifest.files.get(bundle.manifest.model)


__all__ = ["bundle_sha256", "resolve_gguf"]
