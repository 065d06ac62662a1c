"""Property-based tests of the supervisors' routes, generated from the OpenAPI document FastAPI makes of the
node's own routers and sent to a node serving on loopback, signed in and not: no 5xx, no traceback, every
status and content type one the page may answer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from cartera.core.hooks import load_plugins
from cartera.node import Node
from cartera.web.app import build_app
from cartera.web.context import SESSION_COOKIE
from cartera.web.health import health_router
from cartera.web.i18n import LANGUAGES
from cartera.web.pages import pages_router
from cartera.web.server import WebServer
from cartera.web.signin import signin_router
from tests.browser.seed import PASSWORD, seed
from tests.conftest import write_sites
from tests.peers.net import free_port
from tests.test_web_pages import csrf_of

pytestmark = pytest.mark.abuse

HTML: dict[str, Any] = {"text/html": {}}
AUDIO: dict[str, Any] = {"audio/*": {}}
ERROR_PAGE = {"description": "An error page.", "content": HTML}
#: what any page may answer besides its 200: to sign in, refused, throttled, or load shed
PAGE_ANSWERS: dict[str, Any] = {
    "303": {"description": "To the sign-in page, or where the form leads."},
    **dict.fromkeys(("400", "401", "403", "404", "405", "413", "422", "429", "503"), ERROR_PAGE),
}
#: the 200 of the routes that are not pages
CONTENT = {
    "/recordings/{recording_id}/audio": AUDIO,
    "/recordings/{recording_id}/download": AUDIO,
    "/healthz": {"application/json": {}},
    "/metrics": {"text/plain": {}},
}
#: query parameters the pages read from the request, undeclared to FastAPI
QUERIES = {
    "/recordings": ("account", "phone", "agent", "portfolio", "outcome", "since", "until", "page"),
    "/kpi": ("since", "until"),
    "/audit": ("page",),
}
EXAMPLES = 120  #: per generation mode, spread over the operations
#: byte ranges as players send them, and their edge cases: open ends, suffixes, several, long numbers
RANGE = r"^bytes=[0-9]{0,30}-[0-9]{0,30}(, ?[0-9]{0,30}-[0-9]{0,30}){0,3}$"
PLAYBACK = ("/recordings/{recording_id}/audio", "/recordings/{recording_id}/download")


def supervisors_document(node: Node, app: Any, recordings: list[int]) -> dict[str, Any]:
    """The OpenAPI document of the node's own routers (hidden from its /openapi.json), with what each route may
    answer declared; valid requests name one of ``recordings`` and a language of the pages."""
    web = app.state.web
    routes = [*signin_router(web).routes, *pages_router(web).routes, *health_router(node.web_services()).routes]
    for route in routes:
        assert isinstance(route, APIRoute)
        route.include_in_schema = True
    document = get_openapi(title=app.title, version=app.version, routes=routes)
    known = {"recording_id": [str(number) for number in recordings], "language": list(LANGUAGES)}
    for path, operations in document["paths"].items():
        for operation in operations.values():
            declare(path, operation)
            for parameter in operation["parameters"]:
                if parameter["name"] in known:
                    parameter["schema"] = {"type": "string", "enum": known[parameter["name"]]}
    return document


def declare(path: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = {"200": {"description": "The page.", "content": CONTENT.get(path, HTML)}}
    if path == "/healthz":
        responses["503"] = {"description": "A check fails.", "content": CONTENT[path]}
    elif path != "/metrics":
        responses |= PAGE_ANSWERS
    parameters = operation.setdefault("parameters", [])
    parameters += [{"name": name, "in": "query", "schema": {"type": "string"}} for name in QUERIES.get(path, ())]
    if path in PLAYBACK:
        responses |= {"206": {"description": "A byte range.", "content": AUDIO}, "409": ERROR_PAGE, "416": ERROR_PAGE}
        parameters.append({"name": "Range", "in": "header", "schema": {"type": "string", "pattern": RANGE}})
    operation["responses"] = responses


@dataclass(frozen=True)
class Supervisors:
    base_url: str
    document: dict[str, Any]
    cookie: str  #: the session of a signed-in supervisor of the whole site


@pytest.fixture(scope="module")
def supervisors(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Supervisors]:
    directory = tmp_path_factory.mktemp("site")
    node = Node.open(write_sites(directory), "t", load_plugins(entry_points=False))
    try:
        seeded = seed(node, directory / "spool")
        recordings = [*seeded.recordings.values(), seeded.pending_id, seeded.foreign_id]
        app = build_app(node.web_services())
        port = free_port()
        with WebServer(app, "127.0.0.1", port):
            base_url = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base_url, timeout=30) as client:
                form = {"user": "ana", "password": PASSWORD, "csrf": csrf_of(client.get("/login").text)}
                assert client.post("/login", data=form).status_code == 303
                cookie = f"{SESSION_COOKIE}={client.cookies[SESSION_COOKIE]}"
            yield Supervisors(base_url, supervisors_document(node, app, recordings), cookie)
    finally:
        node.close()


def no_failure(_ctx: schemathesis.CheckContext, response: schemathesis.Response, _case: schemathesis.Case[Any]) -> None:
    """No traceback and no 5xx but 503 (load shed, or /healthz's failing check), which must be declared."""
    assert b"Traceback" not in response.content, response.content[:500]
    assert response.status_code < 500 or response.status_code == 503, response.content[:500]


CHECKS = [no_failure, status_code_conformance, content_type_conformance]


def fuzz(schema: Any, headers: dict[str, str], base_url: str) -> None:
    """Valid and invalid requests to every operation of ``schema``, the same ones on every run."""
    for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

        @given(case=schema.as_strategy(mode))
        @settings(
            max_examples=EXAMPLES,
            derandomize=True,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: schemathesis.Case[Any]) -> None:
            case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)

        call()


def test_signed_in(supervisors: Supervisors) -> None:
    """Every GET route, as a supervisor of the whole site: signing in or out with generated forms would change
    the session under the test."""
    schema = schemathesis.openapi.from_dict(supervisors.document).include(method="GET")
    fuzz(schema, {"Cookie": supervisors.cookie}, supervisors.base_url)


def test_anonymous(supervisors: Supervisors) -> None:
    fuzz(schemathesis.openapi.from_dict(supervisors.document), {}, supervisors.base_url)
