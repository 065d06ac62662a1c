"""Property-based tests of the creditor API, generated from its committed OpenAPI document and sent to a node
serving it on loopback, with the creditor's token and without: no 5xx, no traceback, every answer declared."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from cartera.core.hooks import load_plugins
from cartera.node import Node
from cartera.web.app import PLUGIN_PREFIX, build_app
from cartera.web.server import WebServer
from tests.conftest import REPO, write_sites
from tests.plugins.crm_sync.test_http import BCO_TOKEN, HTTP_SITE

pytestmark = pytest.mark.abuse

API = f"{PLUGIN_PREFIX}/crm_sync/v1"
SCHEMA = schemathesis.openapi.from_path(REPO / "docs" / "creditor-api.openapi.json")
SCHEMA.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE], max_examples=30, deterministic=True
)


@pytest.fixture(scope="module")
def node_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A node with the http plugin serving its whole app on loopback; its creditor is the one of the document's
    examples (BCO, token ``BCO_TOKEN``), so they are accepted and the generated rows reach the spool."""
    config = write_sites(tmp_path_factory.mktemp("site"))
    text = config.read_text(encoding="utf-8")
    section = HTTP_SITE.lstrip().replace(".BANCO]", ".BCO]")
    config.write_text(text.replace(text[text.index("[sites.t.crm_sync]") :], section), encoding="utf-8")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("CARTERA_TEST_BANCO_TOKEN", BCO_TOKEN)
        node = Node.open(config, "t", load_plugins(entry_points=False))
    try:
        port = node.site.section.web.port
        with WebServer(build_app(node.web_services()), "127.0.0.1", port):
            yield f"http://127.0.0.1:{port}"
    finally:
        node.close()


def no_traceback(
    _ctx: schemathesis.CheckContext, response: schemathesis.Response, _case: schemathesis.Case[Any]
) -> None:
    assert "Traceback" not in response.text, response.text[:500]


#: The HTTP server's answer to a request that is not valid HTTP (a header name holding ';', say): the request
#: never reaches the API, so the API's document does not describe it.
NOT_HTTP = (400, "Invalid HTTP request received.")


def _to_the_api(check: Any) -> Any:
    """``check`` applied to what reached the API; a request the HTTP layer refused as malformed passes."""

    def checked(ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]) -> Any:
        if (response.status_code, response.text) == NOT_HTTP:
            return None
        return check(ctx, response, case)

    checked.__name__ = check.__name__
    return checked


#: what the API promises whatever it is sent (a batch naming another creditor is refused, not accepted)
CHECKS = [
    not_a_server_error,
    *(
        _to_the_api(check)
        for check in (
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
            response_headers_conformance,
        )
    ),
    no_traceback,
]


@SCHEMA.parametrize()
def test_with_the_creditors_token(case: schemathesis.Case[Any], node_url: str) -> None:
    case.call_and_validate(base_url=node_url, headers={"Authorization": f"Bearer {BCO_TOKEN}"}, checks=CHECKS)


@SCHEMA.parametrize()
def test_without_a_token(case: schemathesis.Case[Any], node_url: str) -> None:
    response = case.call_and_validate(base_url=node_url, checks=CHECKS)
    if case.operation.path != f"{API}/health" and case.method.upper() == case.operation.method.upper():
        assert response.status_code == 401, response.text[:300]
