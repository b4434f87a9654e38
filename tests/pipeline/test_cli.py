"""`edgeship describe` as main(argv): the tiny classifier and the tiny random GGUF, in one process."""

from __future__ import annotations

import json

from edgeship.cli import main
from tests.pipeline.conftest import DESCRIBE_CTX
from tests.support import jpeg_bytes


def test_describe_streams_each_image_and_writes_json(vision_bundle, describe_gguf, tmp_path, capsys):
    images = []
    for seed in (0, 1):
        images.append(tmp_path / f"p{seed}.jpg")
        images[-1].write_bytes(jpeg_bytes(seed=seed))
    out = tmp_path / "describe.json"
    rc = main(["describe", str(vision_bundle), *map(str, images), "--llm", str(describe_gguf), "--threads", "1",
               "--llm-ctx", str(DESCRIBE_CTX), "--describe-max-tokens", "8", "--json", str(out)])
    text = capsys.readouterr().out
    assert rc == 0, text
    assert "p0.jpg" in text and "p1.jpg" in text and "tiny: class-" in text
    assert "from the prefix cache" in text and "first token" in text
    data = json.loads(out.read_text())
    assert len(data["results"]) == 2
    for r in data["results"]:
        assert r["vision"]["task"] == "classify" and r["usage"]["completion_tokens"] <= 8
        assert r["usage"]["reused_prompt_tokens"] > 0 and set(r["timing_ms"]) >= {"vision", "first_token", "total"}
    assert data["config"]["max_tokens"] == 8


def test_describe_bad_input(vision_bundle, describe_gguf, tmp_path, capsys):
    bad = tmp_path / "notes.txt"
    bad.write_text("not a picture")
    rc = main(["describe", str(vision_bundle), str(bad), "--llm", str(describe_gguf), "--threads", "1",
               "--llm-ctx", str(DESCRIBE_CTX)])
    assert rc == 2
    assert "notes.txt: not a recognised image" in capsys.readouterr().err
    rc = main(["describe", str(vision_bundle), str(tmp_path / "missing.jpg"), "--llm", str(describe_gguf)])
    assert rc == 2 and "missing.jpg: no such file" in capsys.readouterr().err
