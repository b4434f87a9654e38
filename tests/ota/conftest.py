from __future__ import annotations

import pytest

pytest.importorskip("tuf")

from edgeship.ota.agent import Agent, AgentConfig  # noqa: E402
from edgeship.ota.gate import CanaryConfig  # noqa: E402
from edgeship.ota.repo import RepoConfig, init_repo  # noqa: E402
from edgeship.ota.store import Store  # noqa: E402
from tests.ota.support import make_bundle, serve  # noqa: E402


@pytest.fixture(scope="session")
def bundles(tmp_path_factory):
    """v3 (committed on the device), v4 (a new head), and bad versions 5.x built once."""
    d = tmp_path_factory.mktemp("bundles")
    return {
        "3": make_bundle(d / "v3", "3"),
        "4": make_bundle(d / "v4", "4", head_seed=1),
        "5": make_bundle(d / "v5", "5", head_seed=2),
        "slow": make_bundle(d / "slow", "5", heavy=8),  # 8x the work of v3: far over the 2.0x gate on a busy CPU
        "broken": make_bundle(d / "broken", "5", broken=True),
        "bad_golden": make_bundle(d / "bad_golden", "5", bad_golden=True),
    }


class Device:
    """A repository (made by edgeship ota), its HTTP server, and a device store with v3 installed."""

    def __init__(self, tmp_path, bundles, chunk_kib: int = 4, store_dir=None):
        self.repo = init_repo(tmp_path / "repo", RepoConfig(chunk_kib=chunk_kib))
        self.repo.publish(bundles["3"])
        self.server = serve(self.repo.public)
        self.store = Store(store_dir or tmp_path / "store")
        self.store.install_local(bundles["3"])
        self.root = self.repo.root_file.read_bytes()
        self.config = AgentConfig(self.server.url, ("tiny",), min_free_bytes=0,
                                  canary=CanaryConfig(probe_runs=30))

    def agent(self, **kw) -> Agent:
        return Agent(self.store, kw.pop("config", self.config), self.root, **kw)

    @property
    def record(self):
        return self.store.record("tiny")


@pytest.fixture
def device(tmp_path, bundles):
    d = Device(tmp_path, bundles)
    yield d
    d.server.stop()
