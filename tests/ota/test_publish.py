"""The publisher through the CLI: keys 0600, expiry options, versions that only go up, chunks shared."""

from __future__ import annotations

import datetime as dt
import json
import stat

from edgeship.cli import main
from tests.ota.support import republish_version


def test_init_writes_private_keys_0600_and_the_expiry_periods(tmp_path, capsys):
    repo = tmp_path / "repo"
    assert main(["ota", "init", str(repo), "--key-type", "ecdsa", "--timestamp-expiry-days", "0.5",
                 "--root-expiry-days", "30"]) == 0
    assert stat.S_IMODE((repo / "keys").stat().st_mode) == 0o700
    for role in ("root", "targets", "snapshot", "timestamp"):
        assert stat.S_IMODE((repo / "keys" / f"{role}.pem").stat().st_mode) == 0o600
    root = json.loads((repo / "public" / "metadata" / "1.root.json").read_text())["signed"]
    assert {k["scheme"] for k in root["keys"].values()} == {"ecdsa-sha2-nistp256"}
    expires = dt.datetime.fromisoformat(root["expires"].replace("Z", "+00:00"))
    assert dt.timedelta(days=29, hours=23) < expires - dt.datetime.now(dt.timezone.utc) <= dt.timedelta(days=30)
    ts = json.loads((repo / "public" / "metadata" / "timestamp.json").read_text())["signed"]
    left = dt.datetime.fromisoformat(ts["expires"].replace("Z", "+00:00")) - dt.datetime.now(dt.timezone.utc)
    assert dt.timedelta(hours=11) < left <= dt.timedelta(hours=12)
    assert main(["ota", "init", str(repo)]) == 2  # not empty: refused, nothing overwritten
    assert "not empty" in capsys.readouterr().err


def test_publish_promote_and_refuse_an_older_version(tmp_path, bundles, capsys):
    repo = tmp_path / "repo"
    main(["ota", "init", str(repo), "--chunk-kib", "4"])
    assert main(["ota", "publish", str(bundles["4"]), "--repo", str(repo), "--channel", "canary"]) == 0
    assert "published tiny 4 on canary" in capsys.readouterr().out
    assert main(["ota", "publish", str(bundles["4"]), "--repo", str(repo)]) == 0  # promoted, no new bytes
    assert "0.00 MB (0.0%) new" in capsys.readouterr().out
    assert main(["ota", "publish", str(bundles["3"]), "--repo", str(repo)]) == 2
    assert "not newer than the published 4" in capsys.readouterr().err
    same_version = republish_version(bundles["5"], tmp_path / "other4", "4")
    assert main(["ota", "publish", str(same_version), "--repo", str(repo)]) == 2
    assert "already published with other content" in capsys.readouterr().err
    assert main(["ota", "publish", str(bundles["5"]), "--repo", str(repo), "--channel", "canary"]) == 0
    capsys.readouterr()
    assert main(["ota", "versions", str(repo)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[:3] for line in lines] == [["tiny", "4", "stable"], ["tiny", "5", "canary"]]
    from edgeship.ota.repo import open_repo

    r = open_repo(repo)
    info = r.load("targets").signed.targets["tiny/channels/stable.json"]
    stable = json.loads(r._target_bytes("tiny/channels/stable.json", info.hashes["sha256"]))
    assert [r["version"] for r in stable["versions"]] == ["4"]
    assert main(["ota", "publish", str(tmp_path / "missing"), "--repo", str(repo)]) == 2  # a bad input file
    assert main(["ota", "publish", str(bundles["5"]), "--repo", str(repo), "--channel", "beta"]) == 2


def test_status_and_install_through_the_cli(tmp_path, bundles, capsys):
    store = tmp_path / "store"
    assert main(["ota", "install", str(bundles["3"]), "--store", str(store)]) == 0
    assert main(["ota", "install", str(bundles["4"]), "--store", str(store)]) == 1
    assert "installed already" in capsys.readouterr().err
    assert main(["ota", "status", "--store", str(store), "--json", "-"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[0]["committed"]["version"] == "3" and rows[0]["state"] == "committed"
