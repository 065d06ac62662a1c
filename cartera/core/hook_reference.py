"""The "Hook reference" section of docs/plugins.md, rendered from :mod:`cartera.core.hookspecs`, its one source.

Regenerate it with ``python -m cartera.core.hook_reference docs/plugins.md``; a test fails while it differs.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cartera.core import hookspecs

TITLE = "## Hook reference"
SECTION = re.compile(rf"^{TITLE}\n.*?(?=^## |\Z)", re.M | re.S)
GROUP = re.compile(r"^# --- (.+?) -+$", re.M)
MARKER = f"{hookspecs.PROJECT}_spec"
# reStructuredText of the docstrings -> Markdown, applied in this order, line by line.
MARKDOWN = (
    (re.compile(r"``(.+?)``"), r"`\1`"),
    (re.compile(r":\w+:`([^`]+)`"), r"`\1`"),
    (re.compile(r"^When: "), "- **When**: "),
    (re.compile(r"^:param (\w+): "), r"- `\1`: "),
    (re.compile(r"^:return: "), "- **Returns**: "),
    (re.compile(r"^ {4}"), "  "),
)
INTRO = (
    "Generated from `cartera/core/hookspecs.py` by `python -m cartera.core.hook_reference docs/plugins.md`: edit\n"
    "the hookspecs, not this section. Implement a hook with `from cartera.plugin import hookimpl`."
)

Hook = Callable[..., Any]


def hooks() -> list[Hook]:
    """The hook specifications, in the order of the source."""
    specs = [function for function in vars(hookspecs).values() if callable(function) and hasattr(function, MARKER)]
    return sorted(specs, key=lambda function: inspect.getsourcelines(function)[1])


def groups() -> list[tuple[str, list[Hook]]]:
    """The hooks under the ``# --- title ---`` comment that precedes each in the source."""
    source = inspect.getsource(hookspecs)
    titles = [(source.count("\n", 0, m.start()) + 1, m.group(1)) for m in GROUP.finditer(source)]
    grouped: dict[str, list[Hook]] = {title: [] for _, title in titles}
    for function in hooks():
        line = inspect.getsourcelines(function)[1]
        above = [title for start, title in titles if start < line]
        if not above:
            raise ValueError(f"{function.__name__} is under no '# --- group ---' comment in hookspecs.py")
        grouped[above[-1]].append(function)
    return [(title, functions) for title, functions in grouped.items() if functions]


def signature_line(function: Hook) -> str:
    """``def NAME(PARAMS) -> RETURN`` with the annotations as written (they are strings in hookspecs)."""
    params = []
    for param in inspect.signature(function).parameters.values():
        text = param.name
        if param.annotation is not inspect.Parameter.empty:
            text += f": {param.annotation}"
        if param.default is not inspect.Parameter.empty:
            text += f" = {param.default!r}"
        params.append(text)
    return f"def {function.__name__}({', '.join(params)}) -> {inspect.signature(function).return_annotation}"


def markdown(docstring: str | None) -> str:
    """A docstring's text as Markdown: literals, roles and the When/param/return fields as one list."""
    lines: list[str] = []
    for source_line in inspect.cleandoc(docstring or "").splitlines():
        line = source_line
        for pattern, replacement in MARKDOWN:
            line = pattern.sub(replacement, line)
        after_an_item = len(lines) > 1 and lines[-1] == "" and lines[-2].startswith(("- ", "  "))
        if line.startswith("- ") and after_an_item:
            lines.pop()  # the blank line between "When:" and the fields would split the list in two
        lines.append(line)
    return "\n".join(lines)


def render() -> str:
    """The whole section, its title included, ending with one newline."""
    parts = [TITLE, INTRO, markdown(hookspecs.__doc__)]
    for title, functions in groups():
        parts.append(f"### {title[0].upper()}{title[1:]}")
        for function in functions:
            code = f"```python\n{signature_line(function)}\n```"
            parts += [f"#### {function.__name__}", code, markdown(function.__doc__)]
    return "\n\n".join(parts) + "\n"


def find(document: str) -> re.Match[str]:
    """The section in a Markdown document, up to the next ``## `` title."""
    match = SECTION.search(document)
    if match is None:
        raise ValueError(f"no '{TITLE}' section")
    return match


def section(document: str) -> str:
    """The section as a Markdown document holds it (without the blank lines before the next section)."""
    return find(document).group().rstrip("\n") + "\n"


def regenerate(document: str) -> str:
    """The document with its section replaced by :func:`render`."""
    match = find(document)
    rest = document[match.end() :]
    return document[: match.start()] + render() + ("\n" + rest if rest else "")


if __name__ == "__main__":
    path = Path(sys.argv[1])
    path.write_text(regenerate(path.read_text(encoding="utf-8")), encoding="utf-8")
