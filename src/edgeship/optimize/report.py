"""The optimization report: one measured row per stage, as a table, JSON and an HTML page with plots.

>>> report = Report("fashion-mnist", [StageRow("teacher", m1), StageRow("student", m2)], env=environment(2))
>>> console.print(report.table())
>>> report.write("results/")        # report.json + report.html (inline SVG, no plotting library)

Every figure in a row comes from :mod:`edgeship.optimize.measure`, measured in the run.
"""

from __future__ import annotations

import dataclasses
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from ..util import write_json, write_text_atomic
from .measure import Measurement


@dataclass
class StageRow:
    stage: str
    measurement: Measurement
    artifact: str = ""  # the bundle or file this row measured
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, **self.measurement.to_dict(), "artifact": self.artifact, "note": self.note}


@dataclass
class Report:
    title: str
    rows: list[StageRow] = field(default_factory=list)
    env: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def add(self, stage: str, measurement: Measurement, artifact: str = "", note: str = "") -> StageRow:
        row = StageRow(stage, measurement, artifact, note)
        self.rows.append(row)
        return row

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "rows": [r.to_dict() for r in self.rows], "env": self.env, **self.extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Report":
        """The inverse of :meth:`to_dict` (for printing a report read back from JSON)."""
        names = {f.name for f in dataclasses.fields(Measurement)}
        rows = [StageRow(r["stage"], Measurement(**{k: v for k, v in r.items() if k in names}),
                         r.get("artifact", ""), r.get("note", "")) for r in data.get("rows", [])]
        extra = {k: v for k, v in data.items() if k not in ("title", "rows", "env")}
        return cls(data.get("title", ""), rows, data.get("env", {}), extra)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str) + "\n"

    def table(self) -> Any:
        from rich.table import Table

        from ..bench.env import describe

        caption = f"measured on {describe(self.env)}" if self.env else None
        table = Table(title=self.title, caption=caption)
        for name in ("stage", "params", "FLOPs", "size", "accuracy", "p50 ms", "p95 ms", "note"):
            table.add_column(name, justify="left" if name in ("stage", "note") else "right")
        for r in self.rows:
            table.add_row(*cells(r), r.note)
        return table

    def html(self) -> str:
        return render_html(self)

    def markdown(self) -> str:
        head = ["stage", "params", "FLOPs", "size", "accuracy", "p50 ms", "p95 ms", "note"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join([*cells(r), r.note]) + " |" for r in self.rows]
        return "\n".join(lines)

    def write(self, out: Union[str, Path]) -> dict[str, Path]:
        out = Path(out)
        return {"json": write_json(out / "report.json", self.to_dict()),
                "html": write_text_atomic(out / "report.html", self.html())}


def human(n: Union[int, float, None], unit: str = "") -> str:
    if n is None:
        return "-"
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{suffix}{unit}"
    return f"{n:.0f}{unit}"


def cells(r: StageRow) -> list[str]:
    m = r.measurement
    return [
        r.stage, human(m.params), human(m.flops), human(m.file_bytes, "B"),
        f"{m.accuracy:.2%}" if m.accuracy is not None else "-",
        f"{m.p50_ms:.3f}" if m.p50_ms is not None else "-",
        f"{m.p95_ms:.3f}" if m.p95_ms is not None else "-",
    ]


# ---- HTML with inline SVG -------------------------------------------------------------------------

_COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"]
_W, _H, _PAD = 440, 280, 56


def _ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    return [lo + (hi - lo) * i / n for i in range(n + 1)]


def scatter_svg(rows: list[StageRow], x_key: str, y_key: str, x_label: str, y_label: str,
                size_key: str | None = "file_bytes") -> str:
    """Points per stage; marker area proportional to ``size_key`` when given."""
    pts = [(r, getattr(r.measurement, x_key), getattr(r.measurement, y_key)) for r in rows]
    pts = [(r, x, y) for r, x, y in pts if x is not None and y is not None]
    if not pts:
        return "<p>(no data to plot)</p>"
    xs, ys = [p[1] for p in pts], [p[2] for p in pts]
    x0, x1 = 0.0, max(xs) * 1.15
    y0, y1 = min(ys) - (max(ys) - min(ys) + 0.01) * 0.3, max(ys) + (max(ys) - min(ys) + 0.01) * 0.3
    sx = lambda v: _PAD + (v - x0) / (x1 - x0 or 1) * (_W - 1.5 * _PAD)  # noqa: E731
    sy = lambda v: _H - _PAD + (_PAD * 0.5 - (_H - _PAD)) * (v - y0) / (y1 - y0 or 1)  # noqa: E731
    sizes = [getattr(r.measurement, size_key) or 0 for r, _, _ in pts] if size_key else []
    biggest = max(sizes, default=0) or 1
    out = [_axes(x_label, y_label, [(sx(t), f"{t:.3g}") for t in _ticks(x0, x1)],
                 [(sy(t), f"{t:.2%}" if y_key == "accuracy" else f"{t:.3g}") for t in _ticks(y0, y1)])]
    for i, (r, x, y) in enumerate(pts):
        radius = 5 + 14 * math.sqrt(sizes[i] / biggest) if sizes else 6
        color = _COLORS[i % len(_COLORS)]
        out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="{radius:.1f}" fill="{color}" fill-opacity="0.55" '
                   f'stroke="{color}"><title>{html.escape(r.stage)}</title></circle>')
        left = sx(x) > _W * 0.6  # label on the side with room
        tx = sx(x) - radius - 3 if left else sx(x) + radius + 3
        out.append(f'<text x="{tx:.1f}" y="{sy(y) + 4:.1f}" font-size="11" text-anchor="{"end" if left else "start"}">'
                   f'{html.escape(r.stage)}</text>')
    return _svg("".join(out))


def bars_svg(rows: list[StageRow], key: str, label: str, fmt: Any = human) -> str:
    vals = [(r, getattr(r.measurement, key)) for r in rows if getattr(r.measurement, key) is not None]
    if not vals:
        return "<p>(no data to plot)</p>"
    top = max(v for _, v in vals) * 1.15 or 1
    slot = (_W - 1.5 * _PAD) / len(vals)
    sy = lambda v: _H - _PAD - v / top * (_H - 1.5 * _PAD)  # noqa: E731
    out = [_axes("", label, [], [(sy(t), fmt(t)) for t in _ticks(0, top)])]
    for i, (r, v) in enumerate(vals):
        x = _PAD + i * slot + slot * 0.15
        out.append(f'<rect x="{x:.1f}" y="{sy(v):.1f}" width="{slot * 0.7:.1f}" height="{_H - _PAD - sy(v):.1f}" '
                   f'fill="{_COLORS[i % len(_COLORS)]}"><title>{html.escape(r.stage)}: {fmt(v)}</title></rect>')
        out.append(f'<text x="{x + slot * 0.35:.1f}" y="{sy(v) - 4:.1f}" font-size="10" text-anchor="middle">{fmt(v)}</text>')
        out.append(f'<text x="{x + slot * 0.35:.1f}" y="{_H - _PAD + 14:.1f}" font-size="10" '
                   f'text-anchor="middle">{html.escape(r.stage[:18])}</text>')
    return _svg("".join(out))


def _axes(x_label: str, y_label: str, xticks: list[tuple[float, str]], yticks: list[tuple[float, str]]) -> str:
    parts = [f'<line x1="{_PAD}" y1="{_H - _PAD}" x2="{_W - _PAD / 2}" y2="{_H - _PAD}" stroke="#333"/>',
             f'<line x1="{_PAD}" y1="{_PAD / 2}" x2="{_PAD}" y2="{_H - _PAD}" stroke="#333"/>']
    for x, text in xticks:
        parts.append(f'<text x="{x:.1f}" y="{_H - _PAD + 14}" font-size="10" text-anchor="middle">{text}</text>')
    for y, text in yticks:
        parts.append(f'<line x1="{_PAD - 3}" y1="{y:.1f}" x2="{_W - _PAD / 2}" y2="{y:.1f}" stroke="#ddd"/>'
                     f'<text x="{_PAD - 5}" y="{y + 3:.1f}" font-size="10" text-anchor="end">{text}</text>')
    parts.append(f'<text x="{(_W + _PAD) / 2:.0f}" y="{_H - 12}" font-size="12" text-anchor="middle">{html.escape(x_label)}</text>')
    parts.append(f'<text x="14" y="{_H / 2:.0f}" font-size="12" text-anchor="middle" '
                 f'transform="rotate(-90 14 {_H / 2:.0f})">{html.escape(y_label)}</text>')
    return "".join(parts)


def _svg(body: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" viewBox="0 0 {_W} {_H}" '
            f'font-family="sans-serif">{body}</svg>')


def render_html(report: Report) -> str:
    from ..bench.env import describe

    head = "".join(f"<th>{h}</th>" for h in ("stage", "params", "FLOPs", "size", "accuracy", "p50 ms", "p95 ms", "note"))
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in [*cells(r), r.note]) + "</tr>"
                   for r in report.rows)
    charts = [
        ("Accuracy vs latency (marker area: file size)", scatter_svg(report.rows, "p50_ms", "accuracy", "p50 latency (ms, batch 1)", "accuracy")),
        ("Accuracy vs file size", scatter_svg(report.rows, "file_bytes", "accuracy", "file size (bytes)", "accuracy", None)),
        ("File size per stage", bars_svg(report.rows, "file_bytes", "bytes")),
        ("FLOPs per stage", bars_svg(report.rows, "flops", "FLOPs")),
        ("p50 latency per stage", bars_svg(report.rows, "p50_ms", "ms", lambda v: f"{v:.3g}")),
    ]
    figures = "".join(f"<figure><figcaption>{html.escape(t)}</figcaption>{svg}</figure>" for t, svg in charts)
    env = html.escape(describe(report.env)) if report.env else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(report.title)}</title>
<style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child,td:last-child{{text-align:left}}
figure{{display:inline-block;margin:1em}}figcaption{{font-weight:bold;margin-bottom:4px}}</style></head>
<body><h1>{html.escape(report.title)}</h1>
<p>Every figure measured in this run: {env}. Accuracy on the full test set in ONNX Runtime; latency at batch 1.</p>
<table><tr>{head}</tr>{body}</table>
<div>{figures}</div>
<details><summary>JSON</summary><pre>{html.escape(report.to_json())}</pre></details>
</body></html>
"""
