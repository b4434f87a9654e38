"""EfficientNet-Lite0 served under a hard memory limit of 256 MB through a burst of 16 clients.

The limit is a cgroup v2 ``memory.max`` where this process may create a child cgroup (the kernel
kills the server if it goes over); elsewhere (cgroup v1, no delegation) an RSS watchdog that kills
the server the moment its RSS passes the limit, and the kernel's own high-water mark (VmHWM) read
at the end, which no spike between two polls escapes. The server is started with
``--memory-budget 256M``: its own plan must say it fits, and then it must.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from pathlib import Path

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")

from edgeship.monitor import memory  # noqa: E402
from edgeship.monitor.memory import MB  # noqa: E402
from tests.serve.support import ServerProcess  # noqa: E402

pytestmark = pytest.mark.slow

LIMIT = 256 * MB
CLIENTS = 16
PER_CLIENT = 6


class HardLimit:
    """A cgroup v2 child with memory.max when this process may make one; otherwise None."""

    def __init__(self, limit: int):
        self.limit = limit
        self.group: Path | None = None
        root = Path("/sys/fs/cgroup")
        try:
            if "memory" not in (root / "cgroup.controllers").read_text().split():
                return
            rel = next(line.split("::", 1)[1] for line in Path("/proc/self/cgroup").read_text().splitlines()
                       if line.startswith("0::"))
            parent = root / rel.strip().lstrip("/")
            if "memory" not in (parent / "cgroup.subtree_control").read_text().split():
                return  # enabling it would move the memory controller for everything beside us: not ours to do
            group = parent / f"edgeship-memcap-{os.getpid()}"
            group.mkdir()
            (group / "memory.max").write_text(str(limit))
            if (group / "memory.swap.max").exists():
                (group / "memory.swap.max").write_text("0")
            self.group = group
        except (OSError, StopIteration):
            self.group = None

    def enter(self) -> None:
        """In the child, before exec: move into the cgroup."""
        assert self.group is not None
        (self.group / "cgroup.procs").write_text(str(os.getpid()))

    def oom_kills(self) -> int:
        if self.group is None:
            return 0
        for line in (self.group / "memory.events").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
        return 0

    def remove(self) -> None:
        if self.group is not None:
            try:
                self.group.rmdir()
            except OSError:
                pass


class Watchdog(threading.Thread):
    """Kill ``pid`` the moment its RSS passes ``limit`` (polled every 2 ms); remembers the largest RSS seen."""

    def __init__(self, pid: int, limit: int):
        super().__init__(daemon=True)
        self.pid, self.limit = pid, limit
        self.largest = 0
        self.killed_at: int | None = None
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            now = memory.usage(pid=self.pid)
            if now is None:
                return
            rss = now.rss_bytes
            self.largest = max(self.largest, rss)
            if rss > self.limit:
                self.killed_at = rss
                os.kill(self.pid, signal.SIGKILL)
                return
            time.sleep(0.002)


async def _burst(url: str, jpeg: bytes, name: str) -> list[int]:
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
        async def one_client() -> list[int]:
            codes = []
            for _ in range(PER_CLIENT):
                r = await client.post(f"/v1/models/{name}/predict", files={"file": ("photo.jpg", jpeg, "image/jpeg")})
                codes.append(r.status_code)
            return codes

        return [c for codes in await asyncio.gather(*(one_client() for _ in range(CLIENTS))) for c in codes]


def _photo_jpeg() -> bytes:
    import io

    from PIL import Image

    from tests.serve.support import picture

    try:
        from edgeship.photos import photos

        im = Image.open(photos()["chelsea"]).convert("RGB").resize((640, 480))
    except (ImportError, KeyError, OSError):
        im = Image.fromarray(picture(640, 480, seed=4))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=90)
    return buf.getvalue()


def test_lite0_serves_a_burst_of_16_clients_under_256_mb(lite0_bundle):
    import json

    name = json.loads((lite0_bundle / "edgeship.json").read_text())["name"]
    cap = HardLimit(LIMIT)
    flags = ("--memory-budget", "256M", "--max-pixels", "1000000")  # 640x480 photos; a board this small says so
    # The child moves itself into the cgroup before exec, so not a byte escapes it.
    srv = ServerProcess([lite0_bundle], *flags, preexec_fn=cap.enter if cap.group is not None else None)
    dog = Watchdog(srv.proc.pid, LIMIT)
    dog.start()
    try:
        srv.wait_live(timeout=120)
        budget = httpx.get(srv.url + "/v1/budget", timeout=10).json()
        assert budget["fits"] and budget["peak_bytes"] <= LIMIT, budget  # its own plan says it fits
        codes = asyncio.run(_burst(srv.url, _photo_jpeg(), name))
        peak = memory.peak_rss_bytes(pid=srv.proc.pid)
        alive = srv.proc.poll() is None
        after = httpx.get(srv.url + "/v1/budget", timeout=10).json() if alive else None
    finally:
        dog.done.set()
        srv.stop()
        cap.remove()
    how = "cgroup v2 memory.max" if cap.group is not None else "RSS watchdog + VmHWM"
    assert dog.killed_at is None, f"killed by the watchdog at {dog.killed_at / MB:.1f} MB"
    assert cap.oom_kills() == 0 and alive, f"the server died under the {how} limit:\n{srv.output()[-2000:]}"
    assert codes == [200] * CLIENTS * PER_CLIENT, codes
    print(f"peak RSS {peak / MB:.1f} MB, planned peak {budget['peak_bytes'] / MB:.1f} MB, watchdog saw {dog.largest / MB:.1f} MB ({how})")
    assert peak is not None and peak <= LIMIT, f"peak RSS {peak / MB:.1f} MB over {LIMIT / MB:.0f} MB ({how})"
    # and the plan's peak was not a wild guess: the burst's real peak stays under what it planned
    assert after["measured"]["peak_rss_bytes"] <= budget["peak_bytes"]
