"""The Update Module with the real Mender client (standalone): install, commit, rollback, a failing bundle."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow
MODULES = Path("/usr/share/mender/modules/v3")
INFO = Path("/etc/mender/artifact_info")


@pytest.fixture
def mender(tmp_path):
    if not (shutil.which("mender") and shutil.which("mender-artifact")):
        pytest.skip("Debian mender-client / mender-artifact not installed (make system-deps)")
    from edgeship.ota.mender import MODULE_NAME, write_module

    module = MODULES / MODULE_NAME
    made_info = not INFO.exists()
    try:
        write_module(MODULES, tmp_path / "store")  # what `edgeship ota mender-module --install` does
        if made_info:
            INFO.parent.mkdir(parents=True, exist_ok=True)
            INFO.write_text("artifact_name=factory\n")
    except PermissionError:
        pytest.skip("needs root to install a Mender Update Module")
    data = tmp_path / "mender-data"
    data.mkdir()
    (data / "device_type").write_text("device_type=edge-test\n")
    (tmp_path / "mender.conf").write_text("{}\n")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["mender", "--no-syslog", "--config", str(tmp_path / "mender.conf"), "--data", str(data),
                               *args], capture_output=True, text=True, timeout=300)

    yield run
    module.unlink(missing_ok=True)
    if made_info:
        INFO.unlink(missing_ok=True)


def artifact(tmp_path, bundle: Path, name: str) -> Path:
    from edgeship.bundle import pack

    tar = pack(bundle, tmp_path / f"{name}.tar")
    out = tmp_path / f"{name}.mender"
    subprocess.run(["mender-artifact", "write", "module-image", "-T", "edgeship-bundle", "-n", name,
                    "-t", "edge-test", "-f", str(tar), "-o", str(out)], check=True, capture_output=True)
    return out


def test_mender_installs_commits_and_rolls_back_through_the_store(mender, tmp_path, bundles):
    from edgeship.ota.store import Store

    store = Store(tmp_path / "store")
    assert mender("install", str(artifact(tmp_path, bundles["3"], "tiny-3"))).returncode == 0
    assert store.record("tiny").state.value == "canary"
    assert mender("commit").returncode == 0
    assert store.record("tiny").committed.version == "3" and store.current("tiny").name.startswith("3-")

    assert mender("install", str(artifact(tmp_path, bundles["4"], "tiny-4"))).returncode == 0
    assert mender("rollback").returncode == 0
    rec = store.record("tiny")
    assert rec.state.value == "failed" and rec.committed.version == "3" and "4" in rec.failed
    assert store.current("tiny").name.startswith("3-")

    bad = mender("install", str(artifact(tmp_path, bundles["bad_golden"], "tiny-5")))
    assert bad.returncode != 0
    rec = store.record("tiny")
    assert rec.committed.version == "3" and "golden check failed" in rec.failed["5"]
    assert mender("show-artifact").stdout.strip().startswith("tiny-3")
