"""The plugin contract is one public module, and the installed distribution holds one top-level package."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import cartera.plugin
import cartera.plugin.testing
from tests.conftest import REPO

PUBLIC = {"cartera.plugin", "cartera.plugin.testing"}
PLUGIN_SOURCES = sorted((REPO / "cartera" / "plugins").rglob("*.py")) + sorted(
    (REPO / "examples" / "plugin_template").rglob("*.py")
)


def _cartera_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "cartera" or name.startswith("cartera.")}


def _own_package(path: Path) -> str | None:
    """``cartera.plugins.<kind>.<name>`` for a built-in plugin's file, None for the template."""
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:4]) if parts[:2] == ("cartera", "plugins") and len(parts) > 4 else None


@pytest.mark.parametrize("path", PLUGIN_SOURCES, ids=lambda path: str(path.relative_to(REPO)))
def test_plugins_import_only_the_public_module(path: Path) -> None:
    own = _own_package(path)
    private = {
        name
        for name in _cartera_imports(path)
        if name not in PUBLIC and not (own and (name == own or name.startswith(own + ".")))
    }
    assert not private, f"{path.relative_to(REPO)} imports private modules {sorted(private)}: use cartera.plugin"


@pytest.mark.parametrize("module", [cartera.plugin, cartera.plugin.testing])
def test_the_public_module_exports_what_it_imports(module: object) -> None:
    exported = set(getattr(module, "__all__", ()))
    defined = {name for name in vars(module) if not name.startswith("_") and name not in {"annotations"}}
    assert exported == defined - {"testing"}
    assert all(getattr(module, name) is not None for name in exported)


def test_the_distribution_installs_one_top_level_package(tmp_path: Path) -> None:
    """``pip install .`` adds ``cartera`` only: no generic ``core`` or ``plugins`` in site-packages. The wheel is
    built from a copy of the sources: setuptools builds in the source tree's ``build/``, which keeps modules
    since removed and would put them in a wheel built later."""
    source = tmp_path / "source"
    shutil.copytree(REPO / "cartera", source / "cartera", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("cartera-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/", 1)[0] for name in names}
    assert {name for name in top if not name.endswith(".dist-info")} == {"cartera"}
    data = {"cartera/py.typed", "cartera/core/store/migrations/script.py.mako", "cartera/web/templates/base.html"}
    assert data <= set(names)
    assert any(name.startswith("cartera/contact/compliance/packs/") for name in names)
    assert any(name.startswith("cartera/web/static/") for name in names)
