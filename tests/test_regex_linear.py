"""Regexes over text a peer or a creditor controls, under attack (round 18 M1's sweep): none may try every split
of a long input. A quadratic one held the GIL for seconds over tens of kilobytes (the whole node stalled)."""

from __future__ import annotations

import time

import pytest

from cartera.core.redaction import MASK, redact
from cartera.plugins.dialers.sip_trunk.calls import sipfrag_status
from cartera.plugins.dialers.sip_trunk.client import _pj_reason

pytestmark = pytest.mark.abuse

GENEROUS_S = 2.0  #: the point is "linear, not quadratic": each input is read in milliseconds


def quick(function: object, text: str) -> object:
    start = time.perf_counter()
    result = function(text)  # type: ignore[operator]
    assert time.perf_counter() - start < GENEROUS_S, (getattr(function, "__name__", function), text[:20])
    return result


def test_redacting_a_long_run_of_scheme_characters_is_linear() -> None:
    """A log line or a creditor file's failed line of ``a.a.a...`` made the URL password pattern start a scheme at
    every word boundary and read to the end from each (40 KB: 1 s, 400 KB: 100 s)."""
    for text in ("a." * 100_000, "a-" * 100_000, "a+" * 100_000, "a://x:" * 30_000, ("x " * 50_000) + "a://"):
        quick(redact, text)
    assert (
        redact("postgresql+psycopg://cartera:s3cret-pw@db:5432/x") == f"postgresql+psycopg://cartera:{MASK}@db:5432/x"
    )
    assert redact("see https://u:p4ss@h/ and sftp://v:w0rd@k") == f"see https://u:{MASK}@h/ and sftp://v:{MASK}@k"
    assert redact("a.b.c://u:p@h") == f"a.b.c://u:{MASK}@h"
    assert redact("no url: user:pass@host, http://host:80/x") == "no url: user:pass@host, http://host:80/x"


def test_a_sipfrag_after_a_long_run_of_blank_lines_is_read_linearly() -> None:
    notify = "NOTIFY sip:a@b SIP/2.0\r\nEvent: refer\r\nContent-Type: message/sipfrag\r\n\r\nSIP/2.0 180 Ringing \r\n"
    assert sipfrag_status(notify) == (180, "Ringing")
    assert sipfrag_status("X\n\n\r\n \t SIP/2.0 200 OK") == (200, "OK")
    assert sipfrag_status("X\r\n\r\nnot a frag\n\nSIP/2.0 503 Service Unavailable\r\n") == (503, "Service Unavailable")
    assert sipfrag_status("X\r\n\r\nSIP/2.0 2x0 OK") is None
    for text in ("\n" * 60_000, "\r\n" * 60_000, "\n\n" + " " * 60_000, "\n\n\t" * 30_000 + "SIP/2.0 200 OK"):
        quick(sipfrag_status, text)
    assert sipfrag_status("\n\n\t" * 30_000 + "SIP/2.0 200 OK") == (200, "OK")


def test_pjsua_reasons_lose_their_source_location_linearly() -> None:
    assert _pj_reason(RuntimeError("Invalid URI (PJSIP_EINVALIDURI) [../src/pjsua2/call.cpp:123]")) == (
        "Invalid URI (PJSIP_EINVALIDURI)"
    )
    assert _pj_reason(RuntimeError("a [b [c.cpp:1] \n")) == "a"
    assert _pj_reason(RuntimeError("a [b] [c.cpp:x]")) == "a [b] [c.cpp:x]"
    assert _pj_reason(RuntimeError("busy [here]")) == "busy [here]"
    for text in (" " * 60_000 + "x", "[" * 60_000, "[" + "a.cpp:" * 20_000 + "]x"):
        quick(lambda t: _pj_reason(RuntimeError(t)), text)
