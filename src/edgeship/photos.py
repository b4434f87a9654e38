"""Real photos that installed packages ship: for the demo, export validation and calibration.

Nothing here downloads. Packages are located with ``importlib.util.find_spec`` and never
imported, so asking for photos costs no import of scikit-image, scikit-learn or matplotlib.

>>> photos()["chelsea"]
PosixPath('.../skimage/data/chelsea.png')
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

# Colour photographs (not synthetic test patterns, not microscopy) by package-relative folder.
_SKIMAGE = ["chelsea.png", "coffee.png", "astronaut.png", "rocket.jpg", "motorcycle_left.png", "hubble_deep_field.jpg"]
_SKLEARN = ["china.jpg", "flower.jpg"]
_MATPLOTLIB = ["grace_hopper.jpg"]
_DARKNET = Path("/usr/share/darknet/data")  # Debian package darknet: dog, eagle, giraffe, horses, person, kite


def _package_dir(name: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def photos() -> dict[str, Path]:
    """Name → path of every real colour photo found on this machine (possibly empty)."""
    found: dict[str, Path] = {}
    roots = [
        (_package_dir("skimage"), "data", _SKIMAGE),
        (_package_dir("sklearn"), "datasets/images", _SKLEARN),
        (_package_dir("matplotlib"), "mpl-data/sample_data", _MATPLOTLIB),
    ]
    for root, sub, names in roots:
        if root is None:
            continue
        for name in names:
            path = root / sub / name
            if path.is_file():
                found[Path(name).stem] = path
    if _DARKNET.is_dir():
        for path in sorted(_DARKNET.glob("*.jpg")):
            found.setdefault(path.stem, path)
    return found


def photo(name: str) -> Path:
    """One named photo, or a LookupError saying which package ships it."""
    found = photos()
    if name not in found:
        raise LookupError(
            f"photo {name!r} not found; it ships with scikit-image (pip install scikit-image). "
            f"Found: {', '.join(sorted(found)) or 'none'}"
        )
    return found[name]
