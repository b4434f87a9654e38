"""The describe prompt: a template whose placeholders are filled from a vision result.

>>> t = PromptTemplate("You describe photos in one short sentence.",
...                    "A vision model says the photo most likely shows: {summary}. Describe it in one sentence.")
>>> t.check(Task.CLASSIFY)
>>> t.render(Task.CLASSIFY, {"classes": [{"label": "tabby", "score": 0.62}, {"label": "tiger cat", "score": 0.2}]})
'A vision model says the photo most likely shows: tabby (62%), tiger cat (20%). Describe it in one sentence.'
>>> t.render(Task.DETECT, {"detections": [{"label": "dog", "score": 0.9, "box": [0, 0, 50, 50]}]}, size=(300, 300))
'A vision model says the photo most likely shows: 1 dog (top left). Describe it in one sentence.'

Placeholders are Python format fields without specs. Every task has ``{summary}``, ``{labels}``,
``{label}``, ``{score}``, ``{model}`` and ``{task}``; detection adds ``{count}``, ``{objects}`` and
``{positions}``. An unknown placeholder, or one the served bundle's task does not fill, is an
InputError when the template is made or checked (at start, not on the first request).

The system text and the prompt's words before the first placeholder are the same for every
request: that is the head a prefix cache keeps (``fixed``), cut at a word boundary so that the
first filled-in word keeps its leading space (``" tabby"`` is one token, ``"tabby"`` after a
lone space token is not what the model saw in training). The rest is ``variable``.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from ..bundle import Task
from ..errors import InputError

# The most classes or detections spelled out in a prompt: a small model loses the thread in a
# long list, and the prompt must fit the context whatever the bundle returns.
MAX_LISTED = 10

COMMON = ("summary", "labels", "label", "score", "model", "task")

Values = Callable[[Mapping[str, Any], "tuple[int, int] | None", int], dict[str, str]]
_VALUES: dict[Task, tuple[tuple[str, ...], Values]] = {}


def fills(task: Task, extra: Sequence[str] = ()) -> Callable[[Values], Values]:
    """Register the function that fills the placeholders of ``task`` (COMMON plus ``extra``)."""

    def deco(fn: Values) -> Values:
        _VALUES[task] = (COMMON + tuple(extra), fn)
        return fn

    return deco


def placeholders(task: Task) -> tuple[str, ...]:
    """The placeholders a bundle of ``task`` fills; InputError for a task describe does not handle."""
    if task not in _VALUES:
        handled = ", ".join(t.value for t in _VALUES)
        raise InputError(f"describe works with {handled} bundles, not a {task.value} bundle")
    return _VALUES[task][0]


def _all_known() -> set[str]:
    return {name for names, _ in _VALUES.values() for name in names}


def _parse(text: str, where: str) -> list[tuple[str, str | None]]:
    """``text`` as (literal, field) pairs; InputError for a malformed template or a field with a spec."""
    try:
        parts = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise InputError(f"{where}: not a valid template ({exc}); write a literal brace as {{{{ or }}}}") from None
    out = []
    for literal, name, spec, conversion in parts:
        if name is not None and (spec or conversion or not name.isidentifier()):
            shown = "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
            raise InputError(f"{where}: placeholder {shown} is not a plain name; placeholders are names such as "
                             "{summary}, with no format spec, index or attribute")
        out.append((literal, name))
    return out


def _escape(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")


@dataclass(frozen=True)
class PromptTemplate:
    """A system text (no placeholders) and a prompt (the user message) with placeholders."""

    system: str
    prompt: str
    fields: tuple[str, ...] = field(init=False, default=())
    fixed: str = field(init=False, default="")  # the prompt's words before the first placeholder
    variable: str = field(init=False, default="")  # the rest, still a template

    def __post_init__(self) -> None:
        if not isinstance(self.system, str) or not isinstance(self.prompt, str):
            raise InputError("prompt template: the system text and the prompt must be strings")
        if any(name is not None for _, name in _parse(self.system, "system prompt")):
            raise InputError("system prompt: placeholders go in the prompt template, not the system text "
                             "(the system text is the same for every request)")
        parts = _parse(self.prompt, "prompt template")
        names = tuple(dict.fromkeys(n for _, n in parts if n is not None))
        if not names:
            raise InputError("prompt template: it has no placeholder, so the LLM would never see what the vision "
                             "model found; put {summary} where the result goes")
        unknown = [n for n in names if n not in _all_known()]
        if unknown:
            raise InputError(f"prompt template: unknown placeholder {{{unknown[0]}}}; known placeholders: "
                             + ", ".join("{" + n + "}" for n in sorted(_all_known())))
        first, first_name = next((i, n) for i, (_, n) in enumerate(parts) if n is not None)
        head = "".join(lit for lit, _ in parts[:first]) + parts[first][0]
        # Cut where the last run of white space before the first placeholder begins (none: cut at 0).
        cut = max((i for i, ch in enumerate(head) if ch.isspace()), default=-1)
        while cut > 0 and head[cut - 1].isspace():
            cut -= 1
        cut = max(cut, 0)
        rest = _escape(head[cut:]) + "{" + first_name + "}" + "".join(
            _escape(lit) + ("{" + n + "}" if n is not None else "") for lit, n in parts[first + 1:])
        object.__setattr__(self, "fields", names)
        object.__setattr__(self, "fixed", head[:cut])
        object.__setattr__(self, "variable", rest)

    def check(self, task: Task) -> None:
        """InputError when a placeholder is one that bundles of ``task`` do not fill."""
        known = placeholders(task)
        missing = [n for n in self.fields if n not in known]
        if missing:
            owners = [t.value for t, (names, _) in _VALUES.items() if missing[0] in names]
            raise InputError(f"prompt template: placeholder {{{missing[0]}}} is filled only for {', '.join(owners)} "
                             f"bundles, and this is a {task.value} bundle (its placeholders: "
                             + ", ".join("{" + n + "}" for n in known) + ")")

    def values(self, task: Task, output: Mapping[str, Any], size: tuple[int, int] | None = None,
               listed: int = 3, model: str = "") -> dict[str, str]:
        placeholders(task)
        values = _VALUES[task][1](output, size, max(1, min(listed, MAX_LISTED)))
        return {**values, "model": model, "task": task.value}

    def render_variable(self, task: Task, output: Mapping[str, Any], size: tuple[int, int] | None = None,
                        listed: int = 3, model: str = "") -> str:
        """The request's part of the prompt: everything after ``fixed``."""
        return self.variable.format_map(self.values(task, output, size, listed, model))

    def render(self, task: Task, output: Mapping[str, Any], size: tuple[int, int] | None = None,
               listed: int = 3, model: str = "") -> str:
        """The whole prompt (the user message)."""
        return self.fixed + self.render_variable(task, output, size, listed, model)


def percent(score: float) -> str:
    return f"{score:.0%}"


def plural(word: str, n: int) -> str:
    """English plural of a label's last word, naively: good enough for COCO- and ImageNet-style labels."""
    if n == 1:
        return word
    if word.endswith(("s", "x", "z", "ch", "sh")):
        return word + "es"
    if word.endswith("y") and len(word) > 1 and word[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def where(box: Sequence[float], size: tuple[int, int] | None) -> str | None:
    """Where a box's centre lies in the picture, in words (a 3x3 grid), or None without the size."""
    if size is None or not size[0] or not size[1] or len(box) != 4:
        return None
    cx = (box[0] + box[2]) / 2 / size[0]
    cy = (box[1] + box[3]) / 2 / size[1]
    col = "left" if cx < 1 / 3 else "right" if cx > 2 / 3 else ""
    row = "top" if cy < 1 / 3 else "bottom" if cy > 2 / 3 else ""
    return f"{row} {col}".strip() or "centre"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


@fills(Task.CLASSIFY)
def classify_values(output: Mapping[str, Any], size, listed: int) -> dict[str, str]:
    classes = list(output.get("classes") or [])[:listed]
    if not classes:
        return {"summary": "nothing recognisable", "labels": "nothing", "label": "nothing", "score": "0%"}
    return {
        "summary": ", ".join(f"{c['label']} ({percent(c['score'])})" for c in classes),
        "labels": ", ".join(c["label"] for c in classes),
        "label": classes[0]["label"],
        "score": percent(classes[0]["score"]),
    }


@fills(Task.DETECT, extra=("count", "objects", "positions"))
def detect_values(output: Mapping[str, Any], size, listed: int) -> dict[str, str]:
    dets = sorted(output.get("detections") or [], key=lambda d: -d["score"])
    if not dets:
        return {"summary": "no objects", "labels": "nothing", "label": "nothing", "score": "0%", "count": "0",
                "objects": "no objects", "positions": "no objects"}
    by_label: dict[str, list[dict]] = {}
    for d in dets:
        by_label.setdefault(d["label"], []).append(d)
    groups = list(by_label.items())[:listed]

    def group(label: str, items: list[dict], with_places: bool) -> str:
        head = f"{len(items)} {plural(label, len(items))}"
        places = [p for p in (where(d.get("box", ()), size) for d in items[:listed]) if p]
        return f"{head} ({', '.join(places)})" if with_places and places else head

    positions = []
    for d in dets[:listed]:
        place = where(d.get("box", ()), size)
        positions.append(f"{d['label']}{' at ' + place if place else ''} ({percent(d['score'])})")
    return {
        "summary": _join([group(lab, items, True) for lab, items in groups]),
        "labels": ", ".join(lab for lab, _ in groups),
        "label": dets[0]["label"],
        "score": percent(dets[0]["score"]),
        "count": str(len(dets)),
        "objects": _join([group(lab, items, False) for lab, items in groups]),
        "positions": ", ".join(positions),
    }


__all__ = ["MAX_LISTED", "PromptTemplate", "placeholders", "plural", "where"]
