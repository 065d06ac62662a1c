"""docs/architecture.md draws the layout as it is: the tree in its first code block matches the repository.

A tree line names a path (or several, as ``logs.py, checksums.py``) indented two spaces per level under the
folder above it, then describes it from a fixed column; a description made only of folder names
(``asterisk_ami/  sip_trunk/``) names that folder's subfolders. Lines starting at the description column
continue the description above.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
PACKAGE = ROOT / "cartera"
# Folders whose every module the tree names (the kernel and the domain's named parts).
LISTED_MODULES = ("core", "contact", "portfolio", "recordings", "cli")
NAMES = re.compile(r"[^\s,]+(?:, [^\s,]+)*")
FOLDERS_ONLY = re.compile(r"(?:[\w.-]+/\s*)+")


def tree_block() -> list[str]:
    """The lines of the doc's first code block."""
    block = re.search(r"^```\w*\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.M | re.S)
    assert block, f"{DOC} has no code block"
    return block.group(1).splitlines()


def named_paths() -> set[Path]:
    """Every path the tree names, relative to the repository."""
    lines = [line for line in tree_block() if line.strip()]
    first = NAMES.match(lines[0])
    assert first
    description_column = len(lines[0]) - len(lines[0][first.end() :].lstrip())
    parents: list[Path] = []
    paths: set[Path] = set()
    for line in lines:
        indent = len(line) - len(line.lstrip())
        if indent >= description_column:
            continue
        assert indent in range(0, 2 * len(parents) + 1, 2), f"misindented tree line: {line!r}"
        del parents[indent // 2 :]
        match = NAMES.match(line, indent)
        assert match
        parent = parents[-1] if parents else Path()
        names = match.group().split(", ")
        paths.update(parent / name for name in names)
        description = line[match.end() :].strip()
        if len(names) == 1 and FOLDERS_ONLY.fullmatch(description):
            paths.update(parent / names[0] / child for child in description.split())
        parents.append(parent / names[0])
    return paths


def test_the_tree_is_parsed() -> None:
    paths = named_paths()
    assert {Path("run_site.py"), Path("cartera/core/hookspecs.py"), Path("cartera/plugins/dialers/simulator")} <= paths


def test_every_path_the_tree_names_exists() -> None:
    missing = sorted(str(path) for path in named_paths() if not (ROOT / path).exists())
    assert not missing, f"docs/architecture.md names paths that do not exist: {', '.join(missing)}"


def must_be_named() -> set[Path]:
    """Packages down to cartera/plugins/<kind>/, the built-in plugins, and the modules of LISTED_MODULES."""
    inits = ("*/__init__.py", "*/*/__init__.py", "plugins/*/*/__init__.py")
    packages = {init.parent for pattern in inits for init in PACKAGE.glob(pattern)}
    modules = {module for folder in LISTED_MODULES for module in (PACKAGE / folder).glob("*.py")}
    return {path.relative_to(ROOT) for path in packages | modules if path.name != "__init__.py"}


def test_the_tree_names_every_package_plugin_and_listed_module() -> None:
    unnamed = sorted(str(path) for path in must_be_named() - named_paths())
    assert not unnamed, f"docs/architecture.md does not name: {', '.join(unnamed)}"
