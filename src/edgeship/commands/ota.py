"""``edgeship ota init|publish|refresh|versions|serve-repo|agent|install|status|rollback|mender-module``."""

from __future__ import annotations

from .args import add_json_flag, lazy, positive_float, positive_int


def register(sub) -> None:
    p = sub.add_parser("ota", help="signed over-the-air model updates (TUF repository, device agent, Mender module)",
                       description="Publish bundles to a signed TUF repository and keep devices up to date: "
                                   "staged, health-gated, rolled back on their own. See docs/ota.md.")
    verbs = p.add_subparsers(dest="ota_verb", metavar="ACTION", required=True)

    i = verbs.add_parser("init", help="create a repository: TUF keys (0600) and the first signed metadata")
    i.add_argument("repo", metavar="REPO")
    i.add_argument("--key-type", choices=("ed25519", "ecdsa"), default="ed25519",
                   help="signature scheme of every role (ecdsa: NIST P-256)")
    for role, days in (("root", 365), ("targets", 90), ("snapshot", 30), ("timestamp", 7)):
        i.add_argument(f"--{role}-expiry-days", type=positive_float, default=float(days),
                       help=f"how long {role} metadata stays valid (default {days})")
    i.add_argument("--chunk-kib", type=positive_int, default=64, help="average chunk size of the files (default 64)")
    i.set_defaults(run=lazy("edgeship.commands.ota:init"))

    b = verbs.add_parser("publish", help="add a bundle as a new version of its model and re-sign")
    b.add_argument("bundle", metavar="BUNDLE")
    b.add_argument("--repo", required=True, metavar="REPO")
    b.add_argument("--channel", choices=("stable", "canary"), default="stable")
    b.set_defaults(run=lazy("edgeship.commands.ota:publish"))

    r = verbs.add_parser("refresh", help="re-sign the timestamp (run more often than --timestamp-expiry-days)")
    r.add_argument("repo", metavar="REPO")
    r.set_defaults(run=lazy("edgeship.commands.ota:refresh"))

    v = verbs.add_parser("versions", help="list the published versions")
    v.add_argument("repo", metavar="REPO")
    v.add_argument("--model", default=None)
    v.set_defaults(run=lazy("edgeship.commands.ota:versions"))

    s = verbs.add_parser("serve-repo", help="serve REPO/public over HTTP with Range support (demos, a LAN)")
    s.add_argument("repo", metavar="REPO")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=positive_int, default=8700)
    s.set_defaults(run=lazy("edgeship.commands.ota:serve_repo"))

    a = verbs.add_parser("agent", help="keep the models of a device store up to date (standalone, no server)")
    a.add_argument("--store", required=True, metavar="DIR")
    a.add_argument("--repo-url", required=True, metavar="URL", help="where REPO/public is served")
    a.add_argument("--root", metavar="ROOT.json", help="the repository's root.json (needed the first time)")
    a.add_argument("--model", action="append", default=[], help="model to follow (repeat; default: all in the store)")
    a.add_argument("--channel", choices=("stable", "canary"), default="stable")
    a.add_argument("--interval", type=positive_float, default=300.0, help="seconds between polls (default 300)")
    a.add_argument("--jitter", type=float, default=0.1, help="random spread of the interval (default 0.1 = +-10%%)")
    a.add_argument("--once", action="store_true", help="check once and exit (cron, tests)")
    a.set_defaults(run=lazy("edgeship.commands.ota:agent"))

    n = verbs.add_parser("install", help="install a bundle into a store as the committed version (first install)")
    n.add_argument("bundle", metavar="BUNDLE")
    n.add_argument("--store", required=True, metavar="DIR")
    n.add_argument("--force", action="store_true", help="replace the committed version")
    n.set_defaults(run=lazy("edgeship.commands.ota:install"))

    t = verbs.add_parser("status", help="show each model's versions and update state")
    t.add_argument("--store", required=True, metavar="DIR")
    add_json_flag(t, "each model's record")
    t.set_defaults(run=lazy("edgeship.commands.ota:status"))

    k = verbs.add_parser("rollback", help="go back to the previous version (marks the current one failed)")
    k.add_argument("model")
    k.add_argument("--store", required=True, metavar="DIR")
    k.set_defaults(run=lazy("edgeship.commands.ota:rollback"))

    m = verbs.add_parser("mender-module", help="write the Mender Update Module 'edgeship-bundle'")
    m.add_argument("--install", action="store_true", help="into /usr/share/mender/modules/v3/ (or --dest)")
    m.add_argument("--dest", default="/usr/share/mender/modules/v3", metavar="DIR")
    m.add_argument("--store", required=True, metavar="DIR", help="the device store the module installs into")
    m.set_defaults(run=lazy("edgeship.commands.ota:mender_module"))


def init(args) -> int:
    from ..ota.repo import RepoConfig, init_repo

    cfg = RepoConfig(key_type=args.key_type, root_expiry_days=args.root_expiry_days,
                     targets_expiry_days=args.targets_expiry_days, snapshot_expiry_days=args.snapshot_expiry_days,
                     timestamp_expiry_days=args.timestamp_expiry_days, chunk_kib=args.chunk_kib)
    repo = init_repo(args.repo, cfg)
    print(f"created {repo.path} ({cfg.key_type} keys in {repo.path / 'keys'}, mode 0600)")
    print(f"serve {repo.public} over HTTP; copy {repo.root_file} to each device (agent --root)")
    return 0


def publish(args) -> int:
    from ..ota.repo import open_repo

    r = open_repo(args.repo).publish(args.bundle, args.channel)
    share = r.new_bytes / r.total_bytes if r.total_bytes else 0.0
    print(f"published {r.model} {r.version} on {r.channel}: {r.total_bytes / 1e6:.2f} MB in {r.total_chunks} chunks, "
          f"{r.new_bytes / 1e6:.2f} MB ({share:.1%}) new; targets metadata version {r.targets_version}")
    return 0


def refresh(args) -> int:
    from ..ota.repo import open_repo

    print(f"timestamp re-signed (version {open_repo(args.repo).refresh()})")
    return 0


def versions(args) -> int:
    from ..ota.repo import open_repo

    for row in open_repo(args.repo).versions(args.model):
        print(f"{row['model']:<24} {row['version']:<10} {row['channel']:<7} {row['bytes'] / 1e6:8.2f} MB  {row['published']}")
    return 0


def serve_repo(args) -> int:
    from pathlib import Path

    from ..ota.httpd import RepoServer

    server = RepoServer(Path(args.repo) / "public", args.host, args.port, verbose=True)
    print(f"serving {server.directory} at {server.url} (Ctrl-C to stop)")
    try:
        server.httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def _logging() -> None:
    import logging
    import sys

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")


def agent(args) -> int:
    import signal
    import threading

    from ..ota.agent import Agent, AgentConfig
    from ..ota.client import read_root
    from ..ota.store import Store

    _logging()
    store = Store(args.store)
    cfg = AgentConfig(args.repo_url, tuple(args.model), args.channel, args.interval, args.jitter)
    with store.lock():
        ag = Agent(store, cfg, read_root(args.root))
        if args.once:
            for name in ag.models():
                print(f"{name}: {ag.recover(name)}")
                print(f"{name}: {ag.check_logged(name)}")
            return 0
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            ag.run(stop)
        except KeyboardInterrupt:
            pass
    return 0


def install(args) -> int:
    from ..ota.store import Store

    store = Store(args.store)
    with store.lock(wait_s=10):
        ref = store.install_local(args.bundle, force=args.force)
    print(f"installed {ref.version} as committed ({store.root / 'bundles'})")
    return 0


def status(args) -> int:
    import json

    from ..ota.store import Store

    store = Store(args.store)
    rows = [json.loads(store.record(n).to_json()) for n in store.models()]
    if args.json:
        from ..util import emit_json

        emit_json(args.json, rows, say=print)
        return 0
    def ver(r: dict, k: str) -> str:
        return (r.get(k) or {}).get("version", "-")

    for r in rows:
        last = r.get("last_result") or {}
        print(f"{r['model']}: {r['state']}  committed {ver(r, 'committed')}  previous {ver(r, 'previous')}  "
              f"candidate {ver(r, 'candidate')}  rollbacks {r['rollbacks']}  last: {last.get('result', '-')} "
              f"{last.get('version', '')} {last.get('reason', '')}".rstrip())
    return 0


def rollback(args) -> int:
    from ..ota.agent import Agent
    from ..ota.store import Store

    _logging()
    store = Store(args.store)
    with store.lock(wait_s=10):
        print(Agent(store, None).rollback(store.record(args.model), "rolled back by the operator"))
    return 0


def mender_module(args) -> int:
    from ..ota.mender import write_module

    path = write_module(args.dest if args.install else ".", args.store)
    print(f"wrote {path}")
    return 0
