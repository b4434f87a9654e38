"""One exception tree: every exception class edgeship defines derives from EdgeshipError.

The exceptions are found by importing every module of the package (the classes an import defines
are the ones that can be raised), not by reading a list kept by hand. A private exception (a
leading underscore) may stay outside the tree when its docstring says where it is caught and what
it becomes; it never reaches a user.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

import edgeship
from edgeship.errors import EdgeshipError, InputError, RequestError


def _defined_exceptions():
    found = []
    for info in pkgutil.walk_packages(edgeship.__path__, "edgeship."):
        if info.name.endswith("__main__"):
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError as exc:  # an optional engine absent on this host: its classes cannot be raised here
            if "edgeship" in (getattr(exc, "name", "") or ""):
                raise
            continue
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__:
                found.append((f"{module.__name__}.{name}", obj))
    return found


def test_every_exception_edgeship_defines_is_in_the_tree_or_private_and_documented():
    found = _defined_exceptions()
    assert len(found) > 20, "the walk found too few exceptions to be reading the package"
    outside = []
    for where, cls in found:
        if issubclass(cls, EdgeshipError):
            continue
        doc = cls.__doc__ or ""
        if cls.__name__.startswith("_") and "caught" in doc and "Private" in doc:
            continue
        outside.append(where)
    assert outside == [], f"exceptions outside the EdgeshipError tree: {outside}"


def test_openai_error_is_a_request_error_keeping_its_status_and_body():
    from edgeship.llm.openai_protocol import OpenAIError
    from edgeship.serve.errors import ApiError

    err = OpenAIError(404, "no such model", param="model", code="model_not_found")
    assert isinstance(err, RequestError) and isinstance(err, EdgeshipError)
    assert err.status == 404 and err.client_error
    assert err.body() == {"error": {"message": "no such model", "type": "invalid_request_error",
                                    "param": "model", "code": "model_not_found"}}
    assert issubclass(ApiError, RequestError)
    assert not OpenAIError(503, "busy").client_error


def _tree_names(doc: str) -> set[str]:
    return set(re.findall(r"[├└]── (\w+)", doc))


def test_the_tree_drawings_match_the_classes():
    import edgeship.errors as errors
    import edgeship.llm.errors as llm_errors

    every = {cls.__name__: cls for _, cls in _defined_exceptions()}
    drawn = _tree_names(errors.__doc__)
    # Every public class of the tree is drawn, and every name drawn is a class with that parent.
    public = {n for n, c in every.items() if issubclass(c, EdgeshipError) and not n.startswith("_")}
    assert public <= drawn | {"EdgeshipError"}, f"not drawn in errors.py: {sorted(public - drawn)}"
    checked = 0
    for doc in (errors.__doc__, llm_errors.__doc__):
        stack: list[tuple[int, str]] = []
        for line in doc.splitlines():
            m = re.match(r"^\s*(?:[│ ]*[├└]── )?(\w+)\s", line + " ")
            if not m or ("── " not in line and m.group(1) != "EdgeshipError") or m.group(1) not in every:
                continue
            name, indent = m.group(1), m.start(1)
            while stack and stack[-1][0] >= indent:
                stack.pop()
            if stack:
                parent = every[stack[-1][1]]
                assert issubclass(every[name], parent), f"{name} is drawn under {parent.__name__}"
            stack.append((indent, name))
            checked += 1
    assert checked > 30
    assert issubclass(every["ContextLengthError"], InputError)


@pytest.mark.parametrize("name", ["UploadError", "NotABundleError", "ContextLengthError"])
def test_the_input_errors_the_tree_names_are_input_errors(name):
    every = {cls.__name__: cls for _, cls in _defined_exceptions()}
    assert issubclass(every[name], InputError)
