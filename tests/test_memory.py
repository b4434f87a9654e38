"""Memory readers on fake /proc and /sys trees, the plan's arithmetic and its refusal message."""

from __future__ import annotations

import pytest

from edgeship.monitor.memory import (
    MB,
    MemoryPart,
    MemoryPlan,
    Source,
    When,
    cgroup_limit_bytes,
    peak_rss_bytes,
    physical_memory_bytes,
    reset_peak,
    rss_bytes,
    usage,
)
from tests.support import tree

STATUS = "Name:\tpython\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nRssAnon:\t   61440 kB\nRssFile:\t   40960 kB\n"


def test_usage_splits_rss_into_anonymous_and_mapped(tmp_path):
    proc = tree(tmp_path / "proc", {"self/status": STATUS})
    assert usage(proc) == (100 * MB, 60 * MB, 40 * MB)
    assert rss_bytes(proc) == 100 * MB and peak_rss_bytes(proc) == 200 * MB


def test_a_missing_proc_is_no_sample(tmp_path):
    assert usage(tmp_path) is None and peak_rss_bytes(tmp_path) is None
    assert reset_peak(tmp_path / "nowhere") is False


def test_this_process_has_a_sane_usage():
    u = usage()
    assert u is not None and u.rss_bytes >= u.anon_bytes > 0 and u.rss_bytes == pytest.approx(u.anon_bytes + u.file_bytes, rel=0.05)


@pytest.mark.parametrize("files,expected", [
    ({"self/cgroup": "0::/box\n"}, None),  # v2 without a memory.max file: no limit known
    ({"self/cgroup": "0::/box\n", "sys/fs/cgroup/box/memory.max": "max"}, None),
    ({"self/cgroup": "0::/box\n", "sys/fs/cgroup/box/memory.max": str(256 * MB)}, 256 * MB),
    ({"self/cgroup": "4:memory:/svc\n1:cpu:/\n", "sys/fs/cgroup/memory/svc/memory.limit_in_bytes": str(512 * MB)}, 512 * MB),
    ({"self/cgroup": "4:memory:/svc\n", "sys/fs/cgroup/memory/svc/memory.limit_in_bytes": "9223372036854771712"}, None),
])
def test_cgroup_limit_v1_and_v2(tmp_path, files, expected):
    root = tree(tmp_path, {k if k.startswith("sys/") else f"proc/{k}": v for k, v in files.items()})
    assert cgroup_limit_bytes(root / "proc", root / "sys") == expected


def test_physical_memory_is_the_lower_of_ram_and_the_cgroup_limit(tmp_path):
    root = tree(tmp_path, {"proc/meminfo": "MemTotal:        1048576 kB\nMemFree: 1 kB",
                           "proc/self/cgroup": "0::/box", "sys/fs/cgroup/box/memory.max": str(256 * MB)})
    assert physical_memory_bytes(root / "proc", root / "sys") == 256 * MB
    (root / "sys/fs/cgroup/box/memory.max").write_text("max\n")
    assert physical_memory_bytes(root / "proc", root / "sys") == 1024 * MB
    assert physical_memory_bytes(tmp_path / "none", tmp_path / "none") is None


def test_a_plan_adds_its_parts_and_names_the_biggest_when_over():
    plan = MemoryPlan((MemoryPart("process before models", 90 * MB, Source.MEASURED),
                       MemoryPart("m: weights", 18 * MB, Source.FILE, note="mapped"),
                       MemoryPart("m: batch of 8", 60 * MB, Source.PREDICTED, When.PEAK),
                       MemoryPart("picture decodes at the pixel limit", 600 * MB, Source.PREDICTED, When.PEAK)))
    assert plan.resident_bytes == 108 * MB and plan.peak_bytes == 768 * MB
    assert plan.overrun(1024 * MB) is None
    msg = plan.overrun(256 * MB, {"picture decodes": "lower --max-pixels", "batch of": "lower --max-batch"})
    assert "768 MB, does not fit the memory budget of 256 MB (512 MB over)" in msg
    lines = msg.splitlines()
    assert lines[1].strip().startswith("picture decodes at the pixel limit: 600 MB (predicted) -> lower --max-pixels")
    assert "m: batch of 8: 60 MB" in msg and "lower --max-batch" in msg and "--memory-budget" in msg
    d = plan.to_dict()
    assert d["peak_bytes"] == 768 * MB and d["parts"][1] == {"name": "m: weights", "bytes": 18 * MB, "mb": 18.0,
                                                            "source": "file size", "when": "resident", "note": "mapped"}
