"""A lone UTF-16 surrogate in a request (round 18 G2): JSON's ``"\\ud800"`` (or a surrogate's UTF-8 bytes, which
JSON's parser passes, or a multipart form declared UTF-7) decodes to text no UTF-8 file or database can hold, and
the creditor API answered 500 writing its batch. Every route of the node refuses it before it sees it (400 in its
surface's own error schema, audited, nothing stored), as it refuses a NUL: one rule, ``cartera.web.nul_guard``."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from cartera.core.control_characters import has_control, unkeepable
from cartera.node import Node
from cartera.plugins.crm_sync.http.plugin import HttpCrmSync
from cartera.plugins.sms.kannel.plugin import decode_mo_text
from cartera.web.app import AGENT_ROUTES, PLUGIN_PREFIX, build_app
from cartera.web.workspace_api import API_PREFIX
from tests.plugins.crm_sync.test_http import BCO_TOKEN, http_site
from tests.test_web_pages import Site, sign_in
from tests.test_web_pages import site as pages_site

pytestmark = pytest.mark.abuse
site = pages_site  # the pages' fixture: site t, seeded

SURROGATE = "a lone UTF-16 surrogate in the request"
BATCHES = f"{PLUGIN_PREFIX}/crm_sync/v1/batches"
JSON = {"Content-Type": "application/json"}
ROW = b'"debtor_name":"x","phones":["3001234567"],"balance":"1"'


def creditor_body(batch_id: str, row: bytes) -> bytes:
    return b'{"batch_id":"%s","creditor":"BANCO","portfolio":"TARJETAS","rows":[{%s}]}' % (batch_id.encode(), row)


@pytest.fixture
def creditor_api(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_node: Callable[..., Node]
) -> tuple[TestClient, HttpCrmSync]:
    node = open_node(http_site(tmp_path, monkeypatch))
    client = TestClient(build_app(node.web_services()), raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {BCO_TOKEN}"
    return client, node.adapter("crm_sync", HttpCrmSync)


def spooled(sync: HttpCrmSync) -> list[Path]:
    return sorted(path for path in sync.spool.root.rglob("*") if path.is_file())


@pytest.mark.parametrize(
    "row",
    [
        b'"account_ref":"A\\ud800",' + ROW,  # a value
        b'"account_ref":"A1","zz\\udc00":1,' + ROW,  # a key
        b'"account_ref":"A1",' + ROW.replace(b'"x"', b'"x\\uDBFF\\uDBFF"'),  # two high halves are no pair
        b'"account_ref":"A\xed\xa0\x80",' + ROW,  # a surrogate's UTF-8 bytes: json.loads passes them
    ],
    ids=["value", "key", "two-high", "utf8-bytes"],
)
def test_the_creditor_api_refuses_a_lone_surrogate_storing_nothing(
    creditor_api: tuple[TestClient, HttpCrmSync], row: bytes
) -> None:
    client, sync = creditor_api
    for content_type in ("application/json", "Application/JSON; charset=utf-8"):  # the parser takes either
        answer = client.post(BATCHES, content=creditor_body("s1", row), headers={"Content-Type": content_type})
        assert (answer.status_code, answer.json()) == (400, {"detail": SURROGATE})
    assert spooled(sync) == []
    assert client.get(f"{BATCHES}/s1").status_code == 404


@pytest.mark.parametrize("escape", [b"\\ud800", b"\\u0000"])
def test_the_creditor_api_refuses_a_utf16_body_holding_an_escaped_nul_or_surrogate(
    creditor_api: tuple[TestClient, HttpCrmSync], escape: bytes
) -> None:
    """JSON's parser reads UTF-16 too: the guard reads the body as the parser does, so an escape is seen in it."""
    client, sync = creditor_api
    body = creditor_body("s1", b'"account_ref":"A' + escape + b'",' + ROW).decode().encode("utf-16-le")
    answer = client.post(BATCHES, content=body, headers=JSON)
    assert answer.status_code == 400
    assert answer.json()["detail"] in (SURROGATE, "a NUL character in the request")
    assert spooled(sync) == []


def test_the_creditor_api_takes_a_surrogate_pair_and_an_escaped_backslash(
    creditor_api: tuple[TestClient, HttpCrmSync],
) -> None:
    """No false refusal: ``\\ud83d\\ude00`` is one character (U+1F600), ``\\\\ud800`` the six characters
    ``\\ud800``; either is a row's problem or none, never the body's."""
    client, sync = creditor_api
    pair = creditor_body("s2", b'"account_ref":"A1",' + ROW.replace(b'"x"', b'"x \\ud83d\\ude00"'))
    assert client.post(BATCHES, content=pair, headers=JSON).status_code == 202
    escaped = creditor_body("s3", b'"account_ref":"A\\\\ud800",' + ROW)
    assert client.post(BATCHES, content=escaped, headers=JSON).status_code == 202
    assert len(spooled(sync)) > 0


def _routes(site: Site) -> list[tuple[str, str]]:
    """The app's routes (path, method): FastAPI 0.165 keeps an included router whole (its routes are listed by
    ``effective_route_contexts``), an earlier one flattened them into ``APIRoute``s."""
    found: list[tuple[str, str]] = []
    for route in build_app(site.node.web_services()).routes:
        if isinstance(route, APIRoute):
            found += [(route.path, method) for method in sorted(route.methods or ())]
        for context in getattr(route, "effective_route_contexts", list)():
            found += [(context.path, method) for method in sorted(getattr(context.original_route, "methods", ()))]
    assert len(found) > 20, found
    return found


def _filled(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def _schema(path: str, answer_json: Callable[[], object], text: str) -> None:
    """The refusal in the surface's own error schema."""
    if path.startswith((API_PREFIX, AGENT_ROUTES)):
        assert answer_json() == {"field": "request", "error": SURROGATE}
    elif path.startswith(f"{PLUGIN_PREFIX}/"):
        assert answer_json() == {"detail": SURROGATE}
    else:
        assert "<html" in text.lower()


def _utf7_form(name: str, value: str) -> tuple[bytes, dict[str, str]]:
    """A multipart form declared UTF-7, whose ``+2AA-`` decodes to a lone surrogate (Starlette decodes each field
    by the declared charset)."""
    body = (
        f'--b\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        '--b\r\nContent-Disposition: form-data; name="csrf"\r\n\r\nx\r\n--b--\r\n'
    ).encode()
    return body, {"Content-Type": "multipart/form-data; boundary=b; charset=utf-7"}


def test_every_route_taking_a_body_refuses_a_lone_surrogate(site: Site) -> None:
    """Each route of the node with a body (the supervisors' and agents' pages and forms: sign-in, users, notes,
    dispositions; the workspace API; the plugins' callbacks), anonymous and signed in: a lone surrogate in a
    JSON value or key, or in a form's value or field name, answers 400 in the surface's schema, audited as
    ``web.rejected`` and nothing else written."""
    routes = [(path, method) for path, method in _routes(site) if method in {"POST", "PUT", "PATCH"}]
    assert any(path.startswith(API_PREFIX) for path, _ in routes)
    assert any(path.startswith(AGENT_ROUTES) for path, _ in routes)
    assert any(path == "/login" for path, _ in routes)
    bodies = [
        (b'{"note":"a\\ud800","code":"x","agent":"a"}', JSON),
        (b'{"note":"a","zz\\udfff":"x"}', JSON),
        (b'{"note":"a\xed\xb0\x80"}', {"Content-Type": "application/merge-patch+json"}),
        _utf7_form("note", "a+2AA-"),
        _utf7_form("zz+3AA-", "a"),
        (b"note=a%ED%A0%80&csrf=x", {"Content-Type": "application/x-www-form-urlencoded"}),
    ]
    for client in (site.client(), sign_in(site.client(), "ana")):
        for path, method in routes:
            for index, (body, headers) in enumerate(bodies):
                before = len(site.audits())
                answer = client.request(method, _filled(path), content=body, headers=headers, follow_redirects=False)
                where = f"{method} {path} body {index}"
                written = {entry.action for entry in site.audits()[before:]}
                if index == len(bodies) - 1:  # percent-encoded bytes are replaced (U+FFFD), never a surrogate
                    assert answer.status_code < 500, where
                    continue
                assert answer.status_code == 400, (where, answer.status_code, answer.text[:200])
                _schema(path, answer.json, answer.text)
                assert written <= {"web.rejected"}, where


def test_a_surrogate_in_a_path_or_query_is_replaced_never_a_500(site: Site) -> None:
    """A path's or query's percent-encoded bytes are decoded with replacement: a surrogate's UTF-8 bytes there are
    U+FFFD, never a surrogate (the /recordings search, the agent's event stream, the pages)."""
    paths = sorted({path for path, method in _routes(site) if method == "GET"})
    assert "/recordings" in paths
    anonymous, signed_in = site.client(), sign_in(site.client(), "ana")
    for path in paths:
        filled = re.sub(r"\{[^}]+\}", "a%ED%A0%80", path)
        # a signed-in event stream does not end: a stranger's is refused, having read its query
        for client in (anonymous,) if path.endswith("/events") else (anonymous, signed_in):
            answer = client.get(f"{filled}?agent=%ED%A0%80&q=%ED%B0%80", follow_redirects=False)
            assert answer.status_code != 500, path  # /healthz answers 503: no scheduler runs here
            assert "Traceback" not in answer.text


def test_the_text_rules_refuse_a_lone_surrogate() -> None:
    assert unkeepable("a\ud800") == "a lone UTF-16 surrogate"
    assert unkeepable("a\x00") == "a NUL character"
    assert unkeepable("a \U0001f600 ñ") is None
    assert has_control("Ana\udc00")


def test_a_kannel_mo_in_ucs2_with_a_lone_surrogate_is_read_as_latin1() -> None:
    """A UCS-2 MO's lone surrogate unit (``%D8%01``: its query holds no NUL, so the guard passes it) is no UTF-16:
    its bytes are read as Latin-1, never a text holding a surrogate."""
    assert decode_mo_text(b"\xd8\x01", "2", "") == "\xd8\x01"
    assert decode_mo_text(b"\xdc\x01\xd8\x02", "2", "UTF-16BE") == "\xdc\x01\xd8\x02"
