"""No import circles in the package, not even under ``TYPE_CHECKING`` or inside a function.

Every ``import`` statement of every module counts (read with :mod:`ast`, nothing is imported): ``from a.b import c``
is an edge to the module ``a.b.c`` when it is one, else to ``a.b``. A package's own ``__init__`` that a submodule's
import runs on the way is not counted as imported by it: only what a module names.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

from cartera.web.services import WebServices

ROOT = Path(__file__).resolve().parents[1]


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module below ``root / package`` by its dotted name (a package by its own name)."""
    modules: dict[str, Path] = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` (at ``path``) imports anywhere in its text."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in modules)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    found.add(f"{base}.{alias.name}")
                elif base in modules:
                    found.add(base)
    return found - {name}


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    modules = module_names(root, package)
    return {name: imported(name, path, modules) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest circle through each module that lies on any (``a -> b -> a``), each circle once."""
    found: dict[frozenset[str], list[str]] = {}
    for start in sorted(graph):
        paths = {start: [start]}
        frontier = [start]
        while frontier and not any(start in graph[module] for module in frontier):
            step: list[str] = []
            for module in frontier:
                for target in sorted(graph[module] - paths.keys()):
                    paths[target] = [*paths[module], target]
                    step.append(target)
            frontier = step
        closing = [module for module in frontier if start in graph[module]]
        if closing:
            circle = [*paths[closing[0]], start]
            found.setdefault(frozenset(circle), circle)
    return list(found.values())


def test_the_package_has_no_import_circle() -> None:
    circles = cycles(import_graph(ROOT, "cartera"))
    assert not circles, "import circles: " + "; ".join(" -> ".join(circle) for circle in circles)


def test_a_circle_under_type_checking_or_relative_is_found_and_named(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from pkg.sub import b\n")
    under_type_checking = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..c import C\n"
    (package / "sub" / "b.py").write_text(under_type_checking)
    (package / "c.py").write_text("def later():\n    import pkg.a\n")
    (package / "d.py").write_text("from pkg import a\n")
    assert cycles(import_graph(tmp_path, "pkg")) == [["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]]


def test_the_web_reaches_the_store_only_through_narrow_services() -> None:
    """No module of ``cartera.web`` imports the store (its database handle, schema, lease...) or SQLAlchemy, and
    the services the node hands the web carry no database handle: its reads are the runtime's page reads and
    store status, its users the user directory's."""
    graph = import_graph(ROOT, "cartera")
    reaching = {
        name: sorted(target for target in targets if target.startswith("cartera.core.store"))
        for name, targets in graph.items()
        if name.startswith("cartera.web")
    }
    assert not {name: found for name, found in reaching.items() if found}, "the web imports the store"
    for path in sorted((ROOT / "cartera" / "web").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            assert not [name for name in names if name.split(".")[0] == "sqlalchemy"], f"{path} imports SQLAlchemy"
    annotations = {field.name: str(field.type) for field in dataclasses.fields(WebServices)}
    assert not [name for name, kind in annotations.items() if "Database" in kind], annotations
