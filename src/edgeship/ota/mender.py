"""The Mender Update Module ``edgeship-bundle``: a Mender fleet delivers bundles into the same store and gate.

    edgeship ota mender-module --install --store /var/lib/edgeship/store
    mender-artifact write module-image -T edgeship-bundle -n mobilenet-4 -t raspberrypi5 \\
        -f mobilenet-4.tar -o mobilenet-4.mender
    mender install mobilenet-4.mender && mender commit        # or: mender rollback

Mender runs ``MODULE STATE FILES_DIR`` for each state of Update Modules v3. This module does not
take over Download (Mender stores the payload in FILES_DIR/files/); ArtifactInstall unpacks the
bundle .tar (entries checked, every sha256 verified), stages it in the store and runs the health
gate up to a passed canary; ArtifactCommit commits; ArtifactRollback rolls back (also after a
power cut mid-install, which Mender follows with a rollback). No reboot is needed.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

MODULE_NAME = "edgeship-bundle"
QUERIES = {"SupportsRollback": "Yes", "NeedsArtifactReboot": "No"}


def write_module(dest: str | os.PathLike, store: str | os.PathLike) -> Path:
    """Write the module script (mode 0755, atomically) into ``dest``; it runs this Python and edgeship."""
    import edgeship

    from .fsutil import write_text_durable

    package_parent = Path(edgeship.__file__).resolve().parent.parent
    script = (
        "#!/bin/sh\n"
        "# Mender Update Module v3 for edgeship bundles; written by `edgeship ota mender-module`.\n"
        f"export PYTHONPATH='{package_parent}'${{PYTHONPATH:+:$PYTHONPATH}}\n"
        f"exec '{sys.executable}' -m edgeship.ota.mender --store '{Path(store).resolve()}' \"$@\"\n"
    )
    path = Path(dest) / MODULE_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_durable(path, script, mode=0o755)
    os.chmod(path, 0o755 | stat.S_IRUSR)
    return path


def _payload(files_dir: Path) -> Path:
    found = sorted(p for p in (files_dir / "files").iterdir() if p.is_file()) if (files_dir / "files").is_dir() else []
    if len(found) != 1:
        raise SystemExit(f"{MODULE_NAME}: expected one bundle .tar in {files_dir / 'files'}, found {len(found)}")
    return found[0]


def run_state(state: str, files_dir: Path, store_dir: Path) -> int:
    from ..bundle import unpack
    from .agent import Agent
    from .store import Store

    if state in QUERIES:
        print(QUERIES[state])
        return 0
    if state not in ("ArtifactInstall", "ArtifactCommit", "ArtifactRollback"):
        return 0  # Download (Mender stores the files), reboots (none needed), ArtifactFailure, Cleanup
    store = Store(store_dir)
    with store.lock(wait_s=60):
        agent = Agent(store, None)
        if state == "ArtifactInstall":
            tmp = Path(tempfile.mkdtemp(prefix=".mender-", dir=store.root / "downloads"))
            try:
                unpack(_payload(files_dir), tmp / "bundle")
                result = agent.install_bundle(tmp / "bundle", commit=False)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
            print(result, file=sys.stderr)
            return 0 if result.startswith("canary passed") else 1
        name = _in_flight(store)
        if name is None:
            return 0  # nothing in flight: the install already rolled itself back
        if state == "ArtifactCommit":
            print(agent.commit_candidate(name), file=sys.stderr)
        else:
            print(agent.rollback(store.record(name), "rolled back by Mender"), file=sys.stderr)
    return 0


def _in_flight(store) -> str | None:
    from .state import REST

    for name in store.models():
        if store.record(name).state not in REST:
            return name
    return None


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog=MODULE_NAME)
    p.add_argument("--store", required=True)
    p.add_argument("state")
    p.add_argument("files", nargs="?", default=".")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
    try:
        return run_state(args.state, Path(args.files), Path(args.store))
    except Exception as exc:  # noqa: BLE001  Mender reads the exit code; the reason goes to its log
        print(f"{MODULE_NAME} {args.state}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
