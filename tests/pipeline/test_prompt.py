"""Describe prompts from vision results: placeholders, the cached head, errors at start. No models."""

from __future__ import annotations

import argparse

import pytest

from edgeship.bundle import Task
from edgeship.cli import main
from edgeship.errors import InputError
from edgeship.pipeline import DEFAULT_PROMPT, DescribeConfig, PromptTemplate

CLASSES = {"classes": [{"label": "Egyptian cat", "score": 0.38}, {"label": "tiger cat", "score": 0.375},
                       {"label": "tabby", "score": 0.165}, {"label": "lynx", "score": 0.01}]}
# A 300x300 picture: two dogs at top left and in the centre, a person at the top right.
DETECTIONS = {"detections": [
    {"label": "person", "score": 0.7, "box": [250, 0, 300, 90]},
    {"label": "dog", "score": 0.9, "box": [0, 0, 50, 50]},
    {"label": "dog", "score": 0.8, "box": [120, 120, 180, 180]},
    {"label": "bus", "score": 0.6, "box": [0, 250, 100, 300]},
]}


def test_classification_fills_labels_and_scores():
    t = PromptTemplate("You describe photos.", "Seen: {summary}. Top: {label} at {score}; all: {labels}; {task} by {model}.")
    assert t.render(Task.CLASSIFY, CLASSES, listed=3, model="effnet") == (
        "Seen: Egyptian cat (38%), tiger cat (38%), tabby (16%). Top: Egyptian cat at 38%; "
        "all: Egyptian cat, tiger cat, tabby; classify by effnet.")
    assert t.render(Task.CLASSIFY, CLASSES, listed=1).startswith("Seen: Egyptian cat (38%). Top")
    assert t.render(Task.CLASSIFY, {"classes": []}).startswith("Seen: nothing recognisable.")


def test_detection_fills_counts_and_positions():
    t = PromptTemplate("s", "{count} things: {objects}. {summary}. {positions}.")
    text = t.render(Task.DETECT, DETECTIONS, size=(300, 300), listed=3)
    assert text == ("4 things: 2 dogs, 1 person and 1 bus. 2 dogs (top left, centre), 1 person (top right) and "
                    "1 bus (bottom left). dog at top left (90%), dog at centre (80%), person at top right (70%).")
    # Without the picture's size, no positions are made up.
    assert t.render(Task.DETECT, DETECTIONS, size=None, listed=3).endswith("dog (90%), dog (80%), person (70%).")
    assert t.render(Task.DETECT, {"detections": []}, size=(10, 10)) == "0 things: no objects. no objects. no objects."


def test_the_head_is_cut_before_the_word_that_comes_first():
    t = PromptTemplate("s", DEFAULT_PROMPT)
    assert t.fixed == "A vision model looked at a photo and says it most likely shows:"
    assert t.variable.startswith(" {summary}.")  # the filled-in word keeps its leading space
    assert t.fixed + t.render_variable(Task.CLASSIFY, CLASSES) == t.render(Task.CLASSIFY, CLASSES)
    braces = PromptTemplate("s", "A {{literal}} brace, then\n{label}")
    assert (braces.fixed, braces.variable) == ("A {literal} brace, then", "\n{label}")
    assert braces.render(Task.CLASSIFY, CLASSES) == "A {literal} brace, then\nEgyptian cat"
    assert PromptTemplate("s", "{summary} first").fixed == ""


@pytest.mark.parametrize("system, prompt, message", [
    ("s", "Seen: {sumary}.", "unknown placeholder {sumary}; known placeholders: {count}"),
    ("s", "Seen: {summary:>20}.", "placeholder {summary:>20} is not a plain name"),
    ("s", "Seen: {classes[0]}.", "is not a plain name"),
    ("s", "Seen: {summary", "not a valid template"),
    ("s", "Describe the photo.", "no placeholder"),
    ("You see {label}.", "{summary}", "placeholders go in the prompt template, not the system text"),
])
def test_bad_templates_are_refused_when_made(system, prompt, message):
    with pytest.raises(InputError, match="^.*" + message.replace("{", r"\{").replace("[", r"\[").replace("(", r"\(")):
        PromptTemplate(system, prompt)
    with pytest.raises(InputError):
        DescribeConfig(system_prompt=system, prompt_template=prompt)


def test_a_placeholder_the_task_does_not_fill_is_refused():
    t = PromptTemplate("s", "Seen: {objects}.")
    t.check(Task.DETECT)
    with pytest.raises(InputError, match=r"\{objects\} is filled only for detect bundles, and this is a classify bundle"):
        t.check(Task.CLASSIFY)
    with pytest.raises(InputError, match="describe works with classify, detect bundles, not a segment bundle"):
        t.check(Task.SEGMENT)


def test_config_limits_and_template_files(tmp_path):
    for bad in ({"max_tokens": 0}, {"temperature": 3.0}, {"listed": 11}, {"repeat_penalty": float("nan")}):
        with pytest.raises(InputError):
            DescribeConfig(**bad)
    from edgeship._config import text_or_file

    f = tmp_path / "prompt.txt"
    f.write_text("Objects: {objects}.\n")
    assert text_or_file("@" + str(f)) == "Objects: {objects}."
    assert text_or_file("plain {summary}") == "plain {summary}"
    with pytest.raises(argparse.ArgumentTypeError, match="cannot read"):
        text_or_file("@" + str(tmp_path / "missing.txt"))


def test_cli_refuses_an_unknown_placeholder_before_loading_anything(tmp_path, capsys):
    # The bundle does not exist: the template is checked first, so the error is about the template.
    rc = main(["serve", str(tmp_path / "no-bundle"), "--prompt-template", "Seen: {colour}."])
    assert rc == 2
    assert "unknown placeholder {colour}" in capsys.readouterr().err
    rc = main(["describe", str(tmp_path / "no-bundle"), str(tmp_path / "x.jpg"), "--prompt-template", "{x}"])
    assert rc == 2
    assert "unknown placeholder {x}" in capsys.readouterr().err
