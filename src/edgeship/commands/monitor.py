"""``edgeship monitor URL``: the dashboard's live view in a terminal, for a device without a browser.

    edgeship monitor http://127.0.0.1:8000            # redraws every second until Ctrl-C
    edgeship monitor http://pi.local:8000 --once      # one frame (scripts, ssh one-liners)
    edgeship monitor http://pi.local:8000 --json -    # the raw /status JSON, once, on stdout
"""

from __future__ import annotations

from typing import Any, Callable

from .args import add_json_flag, lazy, positive_float

SPARK = "▁▂▃▄▅▆▇█"


def register(sub) -> None:
    p = sub.add_parser(
        "monitor", help="live view of a running server in the terminal (latency, throughput, heat, governor)",
        description=(
            "Poll a running `edgeship serve` (GET /status) and show what its dashboard shows: latency p50/p99, "
            "throughput, queue depth, temperature, clock, firmware throttle flags, the thermal governor's state "
            "and decisions, and the models with their versions, with sparklines of the last minutes."
        ),
    )
    p.add_argument("url", metavar="URL", help="the server, e.g. http://127.0.0.1:8000")
    p.add_argument("--interval", type=positive_float, default=1.0, help="seconds between two polls (default 1)")
    p.add_argument("--once", action="store_true", help="print one frame and exit")
    add_json_flag(p, "the /status JSON, once,")
    p.set_defaults(run=lazy("edgeship.commands.monitor:run"))


def fetch_status(url: str, history: bool = False, timeout: float = 5.0) -> dict[str, Any]:
    """GET URL/status with the standard library (a device may lack the serve extra's clients)."""
    import json
    import urllib.error
    import urllib.request

    from ..errors import EdgeshipError, InputError

    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise InputError(f"URL: expected http://HOST:PORT, got {url!r}")
    try:
        with urllib.request.urlopen(f"{base}/status{'?history=1' if history else ''}", timeout=timeout) as r:
            return json.loads(r.read())
    except urllib.error.HTTPError as exc:
        raise EdgeshipError(f"{base}/status answered {exc.code}: is this an edgeship server?") from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise EdgeshipError(f"cannot reach {base}: {reason}") from exc
    except ValueError as exc:
        raise EdgeshipError(f"{base}/status did not answer JSON: {exc}") from exc


def sparkline(values: list, width: int = 40) -> str:
    """``▁▃▅█``: the last ``width`` values scaled between their min and max; gaps for missing values."""
    vals = values[-width:]
    known = [v for v in vals if v is not None]
    if not known:
        return ""
    lo, hi = min(known), max(known)
    span = hi - lo or 1.0
    return "".join(" " if v is None else SPARK[min(len(SPARK) - 1, int((v - lo) / span * (len(SPARK) - 1) + 0.5))]
                   for v in vals)


def _num(v: Any, fmt: str, unit: str = "") -> str:
    return "-" if v is None else f"{v:{fmt}}{unit}"


def render(status: dict[str, Any], history: list[dict[str, Any]]):
    """The frame: a rich renderable from one /status answer and the points seen so far."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    now = status.get("now") or {}
    dev = status.get("device") or {}
    gov = status.get("governor")
    thermal = status.get("thermal") or {}
    top = Table.grid(padding=(0, 3))
    for _ in range(4):
        top.add_column()
    flags = dev.get("flags")
    flag_text = Text()
    if flags is None:
        flag_text.append("not available", style="dim")
    for name, on in (flags or {}).items():
        flag_text.append(f" {name.replace('_', ' ')} ", style="bold white on red" if on else "dim")
        flag_text.append(" ")
    state = gov["state"] if gov else "off"
    style = {"normal": "green", "threads": "yellow", "variant": "yellow"}.get(state, "red" if gov else "dim")
    top.add_row("temperature", _num(dev.get("temp_c"), ".1f", " °C"), "governor", Text(state.replace("_", " "), style=style))
    top.add_row("CPU clock", _num(dev.get("clock_mhz"), ".0f", " MHz"), "thermal status", thermal.get("status") or "-")
    top.add_row("firmware flags", flag_text, "headroom", _num(thermal.get("headroom"), ".2f"))
    top.add_row("throughput", _num(now.get("rps"), ".1f", "/s"), "queue", _num(now.get("queue"), "d"))
    top.add_row("latency p50", _num(now.get("p50_ms"), ".1f", " ms"), "latency p99", _num(now.get("p99_ms"), ".1f", " ms"))

    series = Table(title="last minutes", title_justify="left", show_header=False, box=None, padding=(0, 2))
    series.add_column(style="dim")
    series.add_column()
    series.add_column(justify="right")
    for key, label, fmt in (("p99_ms", "p99 ms", ".1f"), ("rps", "req/s", ".1f"), ("queue", "queue", "d"),
                            ("temp_c", "°C", ".1f"), ("clock_mhz", "MHz", ".0f")):
        vals = [p.get(key) for p in history]
        last = next((v for v in reversed(vals) if v is not None), None)
        series.add_row(label, sparkline(vals), _num(last, fmt))

    models = Table(title="models", title_justify="left")
    for c in ("name", "version", "task", "format", "in flight"):
        models.add_column(c)
    for m in status.get("models", []):
        models.add_row(str(m.get("name")), str(m.get("version")), str(m.get("task", "-")), str(m.get("format", "-")),
                       str(m.get("pending", "-")))
    parts: list[Any] = [top, series, models]
    if gov and gov.get("decisions"):
        dec = Table(title="governor decisions (latest first)", title_justify="left", show_header=False, box=None)
        dec.add_column()
        for d in reversed(gov["decisions"][-5:]):
            dec.add_row(f"{d['from']} → {d['to']}: {d['reason']}")
        parts.append(dec)
    return Group(*parts)


def run(args, fetch: Callable[..., dict[str, Any]] = fetch_status) -> int:
    import time

    from ..util import console as make_console
    from ..util import emit_json

    console = make_console()
    if args.json:  # one poll, then exit
        emit_json(args.json, fetch(args.url, history=True), say=console.print)
        return 0
    first = fetch(args.url, history=True)
    history = list(first.get("history") or [])[-300:]
    if args.once:
        console.print(render(first, history))
        return 0
    from rich.live import Live

    last_seq = first.get("seq")
    with Live(render(first, history), console=console, refresh_per_second=4, screen=False) as live:
        try:
            while True:
                time.sleep(args.interval)
                status = fetch(args.url)
                if status.get("now") and status.get("seq") != last_seq:
                    history = (history + [status["now"]])[-300:]
                    last_seq = status.get("seq")
                live.update(render(status, history))
        except KeyboardInterrupt:
            pass
    return 0
