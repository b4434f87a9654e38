"""The documentation is true: what it cites exists, and what it tells users to run runs.

Links and file names in README.md, docs/ and src/ must resolve; the README stays short and links
each headline figure to its record; the code in the README and the quickstarts runs on real
bundles; the systemd unit passes `systemd-analyze verify` and its command line is a valid
`edgeship serve`; the Prometheus files pass `promtool`, and a real Prometheus scrapes a real server
started the way the unit starts it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support import build_tiny_classifier, make_tiny_bundle

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOC_FILES = [README, *sorted((ROOT / "docs").rglob("*.md"))]
SOURCE_FILES = sorted((ROOT / "src").rglob("*.py"))

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.DOTALL | re.MULTILINE)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_URL = re.compile(r"[a-z]+://\S+")
# A cited document: an all-caps name (README.md, MEASURED.md) or a path into docs/. Lower-case
# names elsewhere are files edgeship writes (results/report.md), and links are checked below.
_DOC_NAME = re.compile(r"(?<![\w/.-])((?:[\w.-]+/)*[A-Z][A-Z0-9_-]*\.md|(?:[\w.-]+/)*docs/[\w./-]+\.md)\b")


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _without_code_blocks(text: str) -> str:
    return _FENCE.sub("", text)


def block(path: Path, name: str) -> str:
    """The fenced block of ``path`` whose first line is the comment ``# name`` (how the docs name files)."""
    for _, body in _FENCE.findall(path.read_text(encoding="utf-8")):
        if body.split("\n", 1)[0].strip() == f"# {name}":
            return body
    raise AssertionError(f"{_rel(path)}: no code block starting with '# {name}'")


def _slug(heading: str) -> str:
    # GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", text))


def _anchors(path: Path) -> set[str]:
    text = _without_code_blocks(path.read_text(encoding="utf-8"))
    return {_slug(m) for m in re.findall(r"^#+\s+(.*)$", text, re.MULTILINE)}


# --- what the docs and the code cite ------------------------------------------------------


def test_files_named_in_docs_and_code_exist():
    # MEASURED.md and ASSETS.md were notes outside the repository; users met their names in
    # `devices --probe` and in comments with nothing to open
    missing = []
    for path in [*DOC_FILES, *SOURCE_FILES]:
        text = _URL.sub("", path.read_text(encoding="utf-8"))
        for name in _DOC_NAME.findall(text):
            if not ((path.parent / name).exists() or (ROOT / name).exists()):
                missing.append(f"{_rel(path)}: {name}")
    assert not missing, "files cited but not in the repository:\n" + "\n".join(missing)


def test_relative_links_in_docs_resolve():
    broken = []
    for path in DOC_FILES:
        for target in _LINK.findall(_without_code_blocks(path.read_text(encoding="utf-8"))):
            if re.match(r"[a-z]+:", target):  # https:, mailto:
                continue
            file_part, _, anchor = target.partition("#")
            dest = (path.parent / file_part).resolve() if file_part else path
            if not dest.exists():
                broken.append(f"{_rel(path)}: {target}")
            elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{_rel(path)}: {target} (no such heading)")
    assert not broken, "links that point nowhere:\n" + "\n".join(broken)


def test_readme_is_short_and_links_each_headline_figure_to_its_record():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) < 200
    measured = text.split("\n## Measured\n", 1)[1].split("\n## ", 1)[0]
    figures = [line for line in measured.splitlines() if line.startswith("- ")]
    assert len(figures) >= 5
    unlinked = [line for line in figures if "](docs/benchmarks/" not in line]
    assert not unlinked, f"headline figures without their evidence: {unlinked}"


def test_the_article_is_named_where_it_is_described():
    url = "https://federicocalo.dev/en/blog/llm-edge-deploying-raspberry-pi-jetson"
    title = "Deep Learning on Edge Devices: From Cloud to Edge"
    for path in (README, ROOT / "docs" / "article.md"):
        text = path.read_text(encoding="utf-8")
        assert url in text and title in " ".join(text.split()), _rel(path)


# --- code the docs give users --------------------------------------------------------------


def test_readme_python_example_runs(tmp_path, monkeypatch, photo_paths):
    import edgeship

    onnx = build_tiny_classifier(tmp_path / "tiny.onnx")
    make_tiny_bundle(tmp_path / "effnet", onnx)
    edgeship.pack(tmp_path / "effnet", tmp_path / "effnet.tar")
    shutil.copy(photo_paths["chelsea"], tmp_path / "cat.png")
    code = next(body for lang, body in _FENCE.findall(README.read_text(encoding="utf-8")) if lang == "python")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102  the README's own code
    assert namespace["pred"].output["classes"][0]["label"].startswith("class-")
    assert len(namespace["preds"]) == 2 and namespace["bundle"].verify()


def test_own_model_quickstart_bundle_script(tmp_path, monkeypatch):
    from edgeship.bundle import open_bundle
    from edgeship.runtime import Model

    build_tiny_classifier(tmp_path / "my_model.onnx", classes=4, size=224)
    (tmp_path / "labels.txt").write_text("ant\nbee\ncat\ndog\n", encoding="utf-8")
    code = block(ROOT / "docs" / "quickstart-own-model.md", "make_bundle.py: my_model.onnx in a bundle, "
                 "with its real preprocessing, labels and a golden check")
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "make_bundle.py", "exec"), {})  # noqa: S102  the doc's own script
    bundle = open_bundle(tmp_path / "my-model")  # verifies every sha256
    pre = bundle.manifest.preprocessing
    assert (pre.scale, pre.mean, pre.std) == (1.0, (127.0,) * 3, (128.0,) * 3) and not bundle.is_bare
    assert bundle.labels == ["ant", "bee", "cat", "dog"]
    assert Model.load(bundle).check_golden().ok


def test_own_model_quickstart_pytorch_module_and_export_line(tmp_path, monkeypatch):
    # the export itself of a package.module:function is tested in test_export.py; this checks
    # that the doc's module builds, takes the weights saved as the doc saves them, and that its
    # command line is one edgeship accepts
    torch = pytest.importorskip("torch")
    from edgeship.cli import build_parser
    from edgeship.optimize.models import resolve_model

    doc = ROOT / "docs" / "quickstart-own-model.md"
    (tmp_path / "mynet.py").write_text(block(doc, "mynet.py"), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    try:
        import mynet

        torch.save(mynet.build().state_dict(), "mynet.pth")
        line = next(ln for ln in doc.read_text(encoding="utf-8").splitlines()
                    if ln.startswith("PYTHONPATH=. edgeship export"))
        args, unknown = build_parser().parse_known_args(shlex.split(line)[2:])
        assert args.verb == "export" and not unknown
        source = resolve_model(args.model, weights=args.weights)
        assert source.module(torch.zeros(1, 3, 96, 96)).shape == (1, 10)
    finally:
        sys.modules.pop("mynet", None)


# --- the systemd unit -----------------------------------------------------------------------

DEPLOY = ROOT / "docs" / "deploy-raspberry-pi.md"
UNIT_PATH = "/etc/systemd/system/edgeship.service"


def _unit() -> dict[str, list[str]]:
    """Keys of the unit's [Service] section, each with its values in order."""
    service: dict[str, list[str]] = {}
    section = None
    for line in block(DEPLOY, UNIT_PATH).splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            service.setdefault(key, []).append(value)
    return service


@pytest.mark.skipif(shutil.which("systemd-analyze") is None or not Path("/usr/lib/systemd/system").is_dir(),
                    reason="systemd-analyze not installed")
def test_systemd_unit_passes_systemd_analyze_verify(tmp_path):
    # verify in a root of its own: the system's units, the unit, and an executable where the doc
    # installs edgeship (this machine has none there)
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    unit = root / UNIT_PATH.lstrip("/")
    unit.parent.mkdir(parents=True)
    unit.write_text(block(DEPLOY, UNIT_PATH), encoding="utf-8")
    exe = root / shlex.split(_unit()["ExecStart"][0])[0].lstrip("/")
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    done = subprocess.run(["systemd-analyze", f"--root={root}", "verify", str(unit)], check=False,
                          capture_output=True, text=True, timeout=120)
    complaints = [ln for ln in (done.stdout + done.stderr).splitlines() if "edgeship.service" in ln]
    assert done.returncode == 0 and not complaints, done.stdout + done.stderr


def test_systemd_unit_runs_the_edgeship_the_doc_installs():
    from edgeship.cli import build_parser

    service = _unit()
    argv = shlex.split(service["ExecStart"][0])
    venv = argv[0].rsplit("/bin/", 1)[0]
    text = DEPLOY.read_text(encoding="utf-8")
    assert f"python3 -m venv {venv}" in text and f"{venv}/bin/pip install 'edgeship[serve]'" in text
    assert f"-o {argv[2]}" in text  # the bundle is unpacked where the unit serves it from
    args, unknown = build_parser().parse_known_args(argv[1:])
    assert args.verb == "serve" and not unknown
    assert args.bundles == ["/opt/models/effnet"] and args.host == "0.0.0.0" and args.port == 8000
    env = dict(v.split("=", 1) for v in service["Environment"])
    assert env["EDGESHIP_CACHE"] == f"/var/cache/{service['CacheDirectory'][0]}"
    assert service["User"] == ["edgeship"] and service["Restart"] == ["on-failure"]


# --- Prometheus -----------------------------------------------------------------------------

PROM_DOC = ROOT / "docs" / "prometheus.md"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package 'prometheus')")

# Unit test of the doc's own rules: each fires on the series it is about, with its summary.
# (The rules edgeship ships are tested in tests/test_alert_rules.py.)
RULE_TESTS = """
rule_files: [edgeship-scrape.yml]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'up{job="edgeship", instance="pi:8000"}'
        values: '0x10'
      - series: 'edgeship_rejected_total{job="edgeship", instance="pi:8000", model="effnet"}'
        values: '0+10x15'
    alert_rule_test:
      - eval_time: 1m
        alertname: EdgeshipDown
        exp_alerts: []
      - eval_time: 3m
        alertname: EdgeshipDown
        exp_alerts:
          - exp_labels: {severity: critical, job: edgeship, instance: "pi:8000"}
            exp_annotations: {summary: "pi:8000: edgeship serve does not answer /metrics"}
      - eval_time: 12m
        alertname: EdgeshipSheddingLoad
        exp_alerts:
          - exp_labels: {severity: warning, instance: "pi:8000", model: effnet}
            exp_annotations: {summary: "pi:8000: effnet refuses requests (queue full)"}
"""


def _prometheus_files(folder: Path) -> Path:
    """prometheus.yml and its rule files as the doc lays them out: the shipped rules copied beside."""
    from edgeship.monitor.rules import RULES_FILE

    shutil.copy(RULES_FILE, folder / "edgeship-alerts.yml")
    (folder / "edgeship-scrape.yml").write_text(block(PROM_DOC, "edgeship-scrape.yml"), encoding="utf-8")
    config = folder / "prometheus.yml"
    config.write_text(block(PROM_DOC, "prometheus.yml"), encoding="utf-8")
    return config


def _rule_names(*files: Path) -> set[str]:
    return {m for f in files for m in re.findall(r"^\s*- alert: (\w+)", f.read_text(encoding="utf-8"), re.MULTILINE)}


@needs_promtool
def test_prometheus_config_and_rules_pass_promtool(tmp_path):
    config = _prometheus_files(tmp_path)
    text = PROM_DOC.read_text(encoding="utf-8")
    assert "from edgeship.monitor.rules import RULES_FILE" in text  # how the doc gets the shipped file
    for cmd in (["check", "config", str(config)],
                ["check", "rules", str(tmp_path / "edgeship-alerts.yml"), str(tmp_path / "edgeship-scrape.yml")]):
        done = subprocess.run([PROMTOOL, *cmd], check=False, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr
    (tmp_path / "tests.yml").write_text(RULE_TESTS, encoding="utf-8")
    done = subprocess.run([PROMTOOL, "test", "rules", "tests.yml"], check=False, cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("prometheus") is None, reason="prometheus not installed (Debian package 'prometheus')")
def test_prometheus_scrapes_the_service_the_unit_starts(tmp_path, tiny_bundle):
    import httpx

    # the unit's command line and environment, on 127.0.0.1 and free ports, serving a tiny bundle
    service = _unit()
    argv = shlex.split(service["ExecStart"][0])[1:]
    port = _free_port()
    swap = {"/opt/models/effnet": str(tiny_bundle.root), "0.0.0.0": "127.0.0.1", "8000": str(port)}
    env = {**os.environ, **dict(v.split("=", 1) for v in service["Environment"])}
    env["EDGESHIP_CACHE"] = str(tmp_path / "cache")  # systemd's CacheDirectory=, here
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "edgeship.cli", *[swap.get(a, a) for a in argv]],
                              stdout=log, stderr=subprocess.STDOUT, env=env)
    prom_port = _free_port()
    config = _prometheus_files(tmp_path)
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("raspberrypi.local:8000", f"127.0.0.1:{port}")
                      .replace("scrape_interval: 15s", "scrape_interval: 1s"), encoding="utf-8")
    prom = subprocess.Popen(["prometheus", f"--config.file={config}", f"--web.listen-address=127.0.0.1:{prom_port}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def query(q: str) -> list:
            r = httpx.get(f"http://127.0.0.1:{prom_port}/api/v1/query", params={"query": q}, timeout=5)
            return r.json()["data"]["result"]

        deadline = time.monotonic() + 90
        info: list = []
        while time.monotonic() < deadline and not info:
            assert server.poll() is None, (tmp_path / "serve.log").read_text(errors="replace")
            assert prom.poll() is None, "Prometheus exited"
            try:
                up = query('up{job="edgeship"} == 1')
                info = query("edgeship_model_info") if up else []
            except (httpx.HTTPError, KeyError, ValueError):
                pass
            time.sleep(0.5)
        assert info, "Prometheus never scraped the server"
        assert info[0]["metric"]["model"] == "tiny" and info[0]["metric"]["site"] == "workshop"
        groups = httpx.get(f"http://127.0.0.1:{prom_port}/api/v1/rules", timeout=5).json()["data"]["groups"]
        assert {r["name"] for g in groups for r in g["rules"]} == _rule_names(
            tmp_path / "edgeship-alerts.yml", tmp_path / "edgeship-scrape.yml")
        assert (tmp_path / "cache" / "sha256-index.json").is_file()  # the unit's cache took the digests
    finally:
        for proc in (prom, server):
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
