"""Tables for bench reports: rich on the terminal, markdown for files. Figures come from the report only."""

from __future__ import annotations

from typing import Any

from .env import describe

NA = "not available"


def _mb(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:.1f}"


def _temp(v: Any) -> str:
    return NA if v is None else f"{v:.1f} °C"


def rows(report: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    """Per batch size, one row per backend (each bundle, and its torch source when timed)."""
    out: dict[int, list[dict[str, Any]]] = {}
    for r in report["results"]:
        for b, s in r["batches"].items():
            row = {"name": r["name"], "backend": "onnxruntime", **s}
            if "skipped" not in s:
                row.update(load_ms=r["load_ms"], first_ms=r["first_inference_ms"], rss_added=r["rss_added_bytes"])
            out.setdefault(int(b), []).append(row)
            if "torch" in r and b in r["torch"]["batches"]:
                out[int(b)].append({"name": r["name"], "backend": r["torch"]["backend"], **r["torch"]["batches"][b]})
    return out


def _ratio(row: dict[str, Any], base: dict[str, Any]) -> str:
    if "skipped" in row or "skipped" in base:
        return "-"
    return f"{row['throughput'] / base['throughput']:.2f}x"


COLUMNS = ["model", "backend", "p50 ms", "p95 ms", "p99 ms", "mean ± std", "items/s", "vs first"]
BUNDLE_COLUMNS = ["model", "load ms", "first run ms", "RSS added MB", "peak RSS MB", "CPU °C before → after",
                  "throttling", "heat during the run", "J/item (batch)"]


def table_cells(row: dict[str, Any], base: dict[str, Any]) -> list[str]:
    if "skipped" in row:
        return [row["name"], row["backend"], f"skipped: {row['skipped']}", *[""] * (len(COLUMNS) - 3)]
    return [
        row["name"], row["backend"], f"{row['p50_ms']:.2f}", f"{row['p95_ms']:.2f}", f"{row['p99_ms']:.2f}",
        f"{row['mean_ms']:.2f} ± {row['std_ms']:.2f}", f"{row['throughput']:.1f}", _ratio(row, base),
    ]


def heat_cell(heat: dict[str, Any] | None) -> str:
    """'stable (max 61.2 °C, clock 2400 MHz)' / 'THERMALLY UNSTABLE: the CPU clock fell 12% ...' / not available."""
    if not heat or heat.get("thermally_unstable") is None:
        return NA
    parts = []
    if heat.get("temp_c"):
        parts.append(f"max {heat['temp_c']['max']:.1f} °C")
    if heat.get("clock_khz"):
        c = heat["clock_khz"]
        parts.append(f"clock {c['min'] / 1000:.0f}-{c['max'] / 1000:.0f} MHz")
    detail = f" ({', '.join(parts)})" if parts else ""
    if heat["thermally_unstable"]:
        return "THERMALLY UNSTABLE: " + "; ".join(heat["reasons"]) + detail
    return "stable" + detail


def bundle_cells(r: dict[str, Any]) -> list[str]:
    energy = [f"{v['energy_j_per_item']:.4f} ({b})" for b, v in r["batches"].items() if v.get("energy_j_per_item")]
    thr = r.get("throttling")
    return [
        r["name"], f"{r['load_ms']:.0f}", f"{r['first_inference_ms']:.1f}", _mb(r["rss_added_bytes"]),
        _mb(r["peak_rss_bytes"]), f"{_temp(r['cpu_temp_c_before'])} → {_temp(r['cpu_temp_c_after'])}",
        NA if thr is None else thr, heat_cell(r.get("heat")), ", ".join(energy) or NA,
    ]


def fps_lines(report: dict[str, Any]) -> list[str]:
    """For sustained runs: throughput in the first and last window and its range, per bundle and batch."""
    out = []
    for r in report["results"]:
        for b, v in r["batches"].items():
            w = v.get("fps_over_time")
            if not w:
                continue
            ips = [x["items_per_s"] for x in w]
            out.append(f"{r['name']} batch {b}, {v['duration_s']:g} s sustained: {ips[0]:.1f} items/s in the first "
                       f"window, {ips[-1]:.1f} in the last (min {min(ips):.1f}, max {max(ips):.1f}, "
                       f"{len(w)} windows; series in the JSON)")
    return out


def print_report(report: dict[str, Any], console) -> None:
    from rich.table import Table

    console.print(f"measured on {describe(report['environment'])}", highlight=False)
    for batch, rs in sorted(rows(report).items()):
        base = next((r for r in rs if "skipped" not in r), rs[0])
        t = Table(title=f"latency, batch {batch}", title_justify="left")
        for c in COLUMNS:
            t.add_column(c, justify="left" if c in ("model", "backend") else "right")
        for r in rs:
            t.add_row(*table_cells(r, base))
        console.print(t)
    t = Table(title="load, memory, sensors", title_justify="left")
    for c in BUNDLE_COLUMNS:
        t.add_column(c, justify="left" if c in ("model", "throttling", "heat during the run") else "right")
    for r in report["results"]:
        t.add_row(*bundle_cells(r))
    console.print(t)
    for line in fps_lines(report):
        console.print(line, highlight=False)
    for r in report["results"]:
        for note in r.get("assumed", []):
            console.print(f"{r['name']}: assumed {note}", style="yellow", highlight=False)


def markdown(report: dict[str, Any]) -> str:
    lines = [f"Measured on {describe(report['environment'])}.", ""]
    for batch, rs in sorted(rows(report).items()):
        base = next((r for r in rs if "skipped" not in r), rs[0])
        lines += [f"**batch {batch}**", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(table_cells(r, base)) + " |" for r in rs]
        lines.append("")
    lines += ["| " + " | ".join(BUNDLE_COLUMNS) + " |", "|" + "---|" * len(BUNDLE_COLUMNS)]
    lines += ["| " + " | ".join(bundle_cells(r)) + " |" for r in report["results"]]
    fps = fps_lines(report)
    if fps:
        lines += ["", *fps]
    return "\n".join(lines) + "\n"
