"""The plugin contract is documented and tested: hookspec docstrings, docs/plugins.md, and a test per hook."""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pluggy
import pytest

from cartera.core import adapters, hook_reference, hookspecs

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "plugins.md"
NOT_TESTS = {Path(__file__).name, "test_entry_point_plugins.py"}

HOOKS: dict[str, Callable[..., Any]] = {function.__name__: function for function in hook_reference.hooks()}


def test_hookspecs_are_found() -> None:
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    assert set(HOOKS) == {name for name in vars(manager.hook) if name.startswith(f"{hookspecs.PROJECT}_")}
    registry = {f"cartera_register_{kind}" for kind in ("dialers", "recording_stores", "sms_gateways", "crm_syncs")}
    assert registry < set(HOOKS)


def test_hook_reference_is_generated_from_the_hookspecs() -> None:
    committed = hook_reference.section(DOCS.read_text(encoding="utf-8"))
    assert committed == hook_reference.render(), (
        "docs/plugins.md's Hook reference differs from cartera/core/hookspecs.py: "
        "run `.venv/bin/python -m cartera.core.hook_reference docs/plugins.md`"
    )


@pytest.mark.parametrize("name", sorted(HOOKS))
def test_hookspec_docstring_says_when_params_return_and_firstresult(name: str) -> None:
    function = HOOKS[name]
    doc = inspect.getdoc(function) or ""
    assert "When:" in doc, f"{name}: say when it is called ('When: ...')"
    for param in inspect.signature(function).parameters:
        assert f":param {param}:" in doc, f"{name}: document parameter {param!r} (':param {param}:')"
    assert ":return:" in doc, f"{name}: document the return value (':return:')"
    says_not = re.search(r"\bnot firstresult\b", doc) is not None
    says_first = re.search(r"(?<!not )\bfirstresult\b", doc) is not None
    assert says_not != says_first, f"{name}: say either 'firstresult' or 'not firstresult', exactly one"
    assert says_first == bool(getattr(function, hook_reference.MARKER)["firstresult"]), (
        f"{name}: the docstring's firstresult statement contradicts the hookspec marker"
    )


def test_every_hook_has_a_test() -> None:
    sources = "\n".join(
        path.read_text(encoding="utf-8") for path in (ROOT / "tests").rglob("*.py") if path.name not in NOT_TESTS
    )
    untested = [name for name in sorted(HOOKS) if not re.search(rf"\b{name}\b", sources)]
    assert not untested, f"hooks no test under tests/ mentions: {', '.join(untested)}"


def test_every_abstract_adapter_method_is_documented() -> None:
    docs = DOCS.read_text()
    abstract = {
        f"{cls.__name__}.{method}"
        for cls in vars(adapters).values()
        if inspect.isclass(cls) and issubclass(cls, adapters.Adapter)
        for method in cls.__abstractmethods__
    }
    assert abstract, "no abstract adapter methods found in cartera.core.adapters"
    missing = sorted(m for m in abstract if not re.search(rf"\b{m.split('.')[1]}\(", docs))
    assert not missing, f"docs/plugins.md does not mention: {', '.join(missing)}"
