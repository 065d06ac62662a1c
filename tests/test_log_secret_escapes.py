"""A secret is masked whatever characters it holds, in text and JSON logs and on a terminal (round 19 I, F4).

The text format JSON-quoted a value (``\\"``, a no-break space or bidi mark kept raw), then Python-escaped each
unprintable character (``\\xa0``, ``\\u202e``): a mix of two escapes that no form redaction knew, so a secret
holding a ``"`` and such a character was logged in clear. Formatters now redact each value before escaping it, and
the escaped forms (a log value's, a terminal line's) are registered too.
"""

from __future__ import annotations

import json
import logging
import sys

import pytest

from cartera.core import redaction
from cartera.core.control_characters import escape_controls
from cartera.core.logs import JsonFormatter, TextFormatter
from cartera.core.redaction import MASK, redact, register_secret

#: what the characters that JSON leaves alone but Python escapes (or a terminal line escapes) do to a secret
SPECIALS = ["\xa0", "\u202e", "\u200b", "\u2028", "\t", "\\", "\x1b", "\u2066"]


def _secrets() -> list[tuple[str, str, str]]:
    """``(secret, left, right)``: each secret holds a ``"``, one special character (two for the last ones) and
    ``left`` and ``right``, plain letters any escaped form of it still shows."""
    found = []
    for number, special in enumerate(SPECIALS):
        left, right = f"Lft{number}qz", f"Rgt{number}qz"
        found.append((f'{left}{special}"{right}', left, right))
    found.append(('Lft90qzñandú\\\u202e"x\xa0Rgt90qz', "Lft90qz", "Rgt90qz"))
    found.append(("Lft91qz'\"\u2028\\\u200bRgt91qz", "Lft91qz", "Rgt91qz"))
    return found


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    monkeypatch.setattr(redaction._site, "_forms", set())
    monkeypatch.setattr(redaction._site, "_pattern", None)
    found = _secrets()
    for secret, _, _ in found:
        register_secret(secret)
    return found


def _records(secret: str) -> list[logging.LogRecord]:
    def record(message: str, args: tuple[object, ...] = (), **fields: object) -> logging.LogRecord:
        made = logging.LogRecord("cartera.t", logging.WARNING, __file__, 1, message, args, None)
        made.fields = fields
        return made

    try:
        raise RuntimeError(f"login refused for {secret}")
    except RuntimeError:
        failed = record("failed", error=RuntimeError(secret))
        failed.exc_info = sys.exc_info()
    return [
        record("t", value=secret),
        record("t", reason=f"login refused for secret {secret}"),
        record("t", detail={"peer": {"said": [f"echo {secret}"]}}, pair=("x", secret)),
        record("connecting with %s", (secret,)),
        failed,
    ]


@pytest.mark.abuse
@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()], ids=["text", "json"])
def test_a_secret_with_a_quote_and_an_unprintable_character_is_masked_in_logs(
    secrets: list[tuple[str, str, str]], formatter: logging.Formatter
) -> None:
    for secret, left, right in secrets:
        for record in _records(secret):
            line = formatter.format(record)
            assert left not in line, (repr(secret), line)
            assert right not in line, (repr(secret), line)
            assert MASK in line, line
            if isinstance(formatter, JsonFormatter):
                assert json.loads(line)["level"] == "WARNING"


@pytest.mark.abuse
def test_a_secret_escaped_for_a_terminal_or_a_json_answer_is_masked(secrets: list[tuple[str, str, str]]) -> None:
    """``check`` lines and command-line errors are printed through ``escape_controls`` then redacted;
    ``/healthz`` redacts each detail, then JSON-encodes it."""
    for secret, left, right in secrets:
        text = f"peer refused: {secret}; again: {secret}"
        for shown in (
            redact(escape_controls(text)),
            json.dumps(redact(text)),
            redact(json.dumps(escape_controls(text), ensure_ascii=False)),
            redact(json.dumps(text)),
        ):
            assert left not in shown, (repr(secret), shown)
            assert right not in shown, (repr(secret), shown)


@pytest.mark.usefixtures("secrets")
def test_ordinary_text_is_logged_as_before() -> None:
    record = logging.LogRecord("cartera.t", logging.INFO, __file__, 1, "t", (), None)
    record.fields = {"value": 'a "b"\u202e', "n": 3, "ok": True}
    line = TextFormatter().format(record)
    assert line.endswith(' t value="a \\"b\\"\\u202e" n=3 ok=True'), line
    doc = json.loads(JsonFormatter().format(record))
    assert (doc["value"], doc["n"], doc["ok"]) == ('a "b"\u202e', 3, True)
