"""The ``http`` crm_sync adapter over a real socket: the conformance suite, auth, idempotency, the export's pull."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError
from sqlalchemy import func, select

from cartera.core.adapters import CrmSync
from cartera.core.clock import SimulatedClock
from cartera.core.hooks import Hooks
from cartera.core.models import Activity, ActivityKind, AssignmentRow, RowError
from cartera.core.registry import AdapterRegistry
from cartera.core.store.database import Database
from cartera.core.store.schema import Account, QuarantinedRow
from cartera.core.testing.context import CapturingContext
from cartera.core.testing.crm_sync import CrmSyncConformance, Delivery, RejectedDelivery
from cartera.node import Node
from cartera.plugins.crm_sync.http.client import WebhookFailed
from cartera.plugins.crm_sync.http.config import DEFAULT_MAX_BODY_BYTES, HttpApiConfig
from cartera.plugins.crm_sync.http.models import BatchIn
from cartera.plugins.crm_sync.http.openapi import render
from cartera.plugins.crm_sync.http.plugin import HttpCrmSync, cartera_register_crm_syncs
from cartera.portfolio.export import ActivityExporter
from cartera.portfolio.importer import AssignmentImporter
from cartera.portfolio.sync import CreditorSync
from cartera.web.app import PLUGIN_PREFIX
from cartera.web.server import WebServer
from tests.conftest import REPO, write_sites
from tests.peers.net import free_port

NOW = datetime(2026, 3, 2, 13, 30, tzinfo=UTC)
BCO_TOKEN = "bco-token-0123456789abcdef0123"
OTRO_TOKEN = "otro-token-0123456789abcdef012"
OPENAPI_FILE = REPO / "docs" / "creditor-api.openapi.json"


def row(ref: str, phone: str = "300 123 4567", balance: Any = "1250000.50", **extra: Any) -> dict[str, Any]:
    return {"account_ref": ref, "debtor_name": f"Deudor {ref}", "phones": [phone], "balance": balance} | extra


GOOD_ROWS = [
    row("BCO-000101", "300 123 4567", "1250000.50"),
    row("BCO-000102", "3101234567", 180000),
    row("BCO-000103", "+57 315 555 0101", "12500000"),
    row("BCO-000104", "3001234567", "-5"),
    row("BCO-000105", "+52 55 5512 3456", "999000"),
]


def batch(batch_id: str, rows: list[dict[str, Any]], creditor: str = "BCO", portfolio: str = "TARJETAS") -> Any:
    return {"batch_id": batch_id, "creditor": creditor, "portfolio": portfolio, "rows": rows}


def make_sync(tmp_path: Path, base_url: str, **creditors: Any) -> HttpCrmSync:
    settings = {
        "creditors": {
            "BCO": {"token": BCO_TOKEN, "portfolios": ["TARJETAS"]} | creditors.pop("BCO", {}),
            "OTRO": {"token": OTRO_TOKEN},
        }
        | creditors,
    }
    context = CapturingContext(tmp_path / "data", clock=SimulatedClock(NOW, 1e-6), base_url=base_url)
    return HttpCrmSync(HttpApiConfig.model_validate(settings), context)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Callable[..., HttpCrmSync]]:
    """Starts adapters and serves each one's router under /plugins/crm_sync on its own loopback port."""
    servers: list[WebServer] = []
    adapters: list[HttpCrmSync] = []

    def serve(**creditors: Any) -> HttpCrmSync:
        port = free_port()
        adapter = make_sync(tmp_path, f"http://127.0.0.1:{port}", **creditors)
        adapter.start()
        app = FastAPI()
        app.include_router(adapter.http_router(), prefix=f"{PLUGIN_PREFIX}/crm_sync")
        server = WebServer(app, "127.0.0.1", port)
        server.start()
        servers.append(server)
        adapters.append(adapter)
        return adapter

    yield serve
    for server in servers:
        server.stop()
    for adapter in adapters:
        adapter.stop()


def api(adapter: HttpCrmSync, token: str | None = BCO_TOKEN) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=adapter.api_url, headers=headers, timeout=10)


def pull_all(adapter: HttpCrmSync, token: str = BCO_TOKEN, limit: int = 500) -> list[int]:
    seqs: list[int] = []
    after = 0
    with api(adapter, token) as client:
        while True:
            page = client.get("/activities", params={"after": after, "limit": limit}).json()
            seqs += [activity["seq"] for activity in page["activities"]]
            after = page["next_after"]
            if not page["more"]:
                return seqs


class TestHttpConformance(CrmSyncConformance):
    @pytest.fixture
    def crm(self, served: Callable[..., HttpCrmSync], monkeypatch: pytest.MonkeyPatch) -> HttpCrmSync:
        """The adapter, its exports reaching the creditors' pull as core's do: core's store keeps what it hands
        ``export`` (the context's ``exported``, core's export cursor passed them)."""
        sync = served()
        context, export = sync.context, sync.export
        assert isinstance(context, CapturingContext)

        def exported_by_core(activities: Sequence[Activity]) -> None:
            export(activities)
            context.exported.extend(activities)

        monkeypatch.setattr(sync, "export", exported_by_core)
        return sync

    @pytest.fixture
    def context(self, crm: HttpCrmSync) -> Any:
        return crm.context

    @pytest.fixture
    def good_delivery(self, crm: HttpCrmSync) -> Delivery:
        with api(crm) as client:
            response = client.post("/batches", json=batch("2026-03-02-1", GOOD_ROWS))
        assert response.status_code == 202, response.text
        (path,) = crm.spool.pending()
        refs = ("BCO-000101", "BCO-000102", "BCO-000103", "BCO-000105")
        return Delivery(path=path, account_refs=refs, rejected_line=4, creditor="BCO", portfolio="TARJETAS")

    @pytest.fixture
    def rejected_delivery(self, crm: HttpCrmSync) -> RejectedDelivery:
        with api(crm) as client:
            assert client.post("/batches", json=batch("2026-03-02-2", GOOD_ROWS)).status_code == 202
        (path,) = crm.spool.pending()
        path.write_bytes(path.read_bytes()[:40])  # damaged on disk after it was stored
        folder = crm.spool.root / "BCO" / "rejected"
        return RejectedDelivery(lambda: [p.read_bytes() for p in sorted(folder.iterdir())] if folder.exists() else [])

    @pytest.fixture
    def bad_header_file(self, tmp_path: Path) -> Path:
        path = tmp_path / "not-a-batch.json"
        path.write_text(json.dumps({"batch_id": "x", "filas": GOOD_ROWS}), encoding="utf-8")
        return path

    @pytest.fixture
    def exported_seqs(self, crm: HttpCrmSync) -> Callable[[], list[int]]:
        return lambda: pull_all(crm)


def test_push_answers_the_rejection_report(served: Callable[..., HttpCrmSync]) -> None:
    sync = served()
    rows = [
        *GOOD_ROWS[:2],
        row("BCO-9", currency="pesos"),
        {"account_ref": "BCO-10", "action": "payment"},
        row("BCO-11", balance="1e400"),
        row("BCO-12", balance="10.005"),
    ]
    with api(sync) as client:
        response = client.post("/batches", json=batch("b-1", rows))
        assert response.status_code == 202
        assert response.json() == {
            "batch_id": "b-1",
            "creditor": "BCO",
            "portfolio": "TARJETAS",
            "status": "pending",
            "rows": 6,
            "rejected": [
                {"index": 2, "field": "currency", "reason": "String should match pattern '^[A-Z]{3}$'"},
                {
                    "index": 3,
                    "field": "row",
                    "reason": "Value error, payment_amount is required with action payment and only then",
                },
                {"index": 4, "field": "balance", "reason": "Decimal input should have no more than 16 digits in total"},
                {"index": 5, "field": "balance", "reason": "Decimal input should have no more than 2 decimal places"},
            ],
        }
        assert client.get("/batches/b-1").json() == response.json()
    (fetched,) = sync.fetch()
    items = list(fetched.items)
    assert [item.line for item in items if isinstance(item, RowError)] == [3, 4, 5, 6]
    assert [item.balance for item in items if isinstance(item, AssignmentRow)] == [Decimal("1250000.50"), 180000]


def test_auth_failures_are_clean_json_and_never_log_tokens(
    served: Callable[..., HttpCrmSync], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    sync = served()
    body = batch("b-1", GOOD_ROWS)
    with api(sync, token=None) as client:
        missing = client.post("/batches", json=body)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        assert missing.json() == {"detail": "send the creditor's token as 'Authorization: Bearer TOKEN'"}
        assert client.post("/batches", json=body, headers={"Authorization": f"Basic {BCO_TOKEN}"}).status_code == 401
        assert client.get("/batches/b-1").status_code == 401
        assert client.get("/activities").status_code == 401
        assert client.get("/health").json() == {"status": "ok", "api": "cartera creditor exchange v1"}
    with api(sync, token=BCO_TOKEN[:-1] + "x") as client:
        wrong = client.post("/batches", json=body)
        assert (wrong.status_code, wrong.json()) == (401, {"detail": "unknown token"})
        assert client.post("/batches", json={"no": "batch"}).status_code == 401, "auth is checked before the body"
    with api(sync, token=OTRO_TOKEN) as client:
        other = client.post("/batches", json=body)
        assert (other.status_code, other.json()) == (403, {"detail": "this token may not deliver for creditor 'BCO'"})
        assert client.post("/batches", json=batch("b-1", GOOD_ROWS, creditor="OTRO")).status_code == 202
        assert client.get("/batches/b-1").json()["creditor"] == "OTRO"
    with api(sync) as client:
        portfolio = client.post("/batches", json=batch("b-2", GOOD_ROWS, portfolio="HIPOTECAS"))
        assert portfolio.status_code == 403
        assert portfolio.json() == {"detail": "creditor 'BCO' may not deliver to portfolio 'HIPOTECAS'"}
        assert client.get("/batches/b-1").status_code == 404, "another creditor's batch is not visible"
    assert [p.parent.parent.name for p in sync.spool.pending()] == ["OTRO"]
    assert "crm_sync.http.unauthorized" in caplog.text
    assert BCO_TOKEN not in caplog.text
    assert OTRO_TOKEN not in caplog.text


@pytest.mark.parametrize(
    ("content", "loc"),
    [
        (b"{not json", ["body", 1]),
        (b"[1, 2]", ["body"]),
        (json.dumps({"batch_id": "b", "creditor": "BCO", "portfolio": "TARJETAS"}).encode(), ["body", "rows"]),
        (json.dumps(batch("b", [])).encode(), ["body", "rows"]),
        (json.dumps(batch("b", [1, "x"])).encode(), ["body", "rows"]),  # type: ignore[list-item]
        (json.dumps(batch("../etc", GOOD_ROWS)).encode(), ["body", "batch_id"]),
        (json.dumps(batch("b", GOOD_ROWS) | {"extra": 1}).encode(), ["body", "extra"]),
        (json.dumps(batch("b", [row("r")] * 10_001)).encode(), ["body", "rows"]),
    ],
)
def test_a_wrong_payload_shape_is_422_with_its_field_path(
    served: Callable[..., HttpCrmSync], content: bytes, loc: list[Any]
) -> None:
    sync = served()
    with api(sync) as client:
        response = client.post("/batches", content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == loc
    assert sync.spool.pending() == []


def test_bodies_over_the_default_limit_are_refused(served: Callable[..., HttpCrmSync]) -> None:
    sync = served()
    with api(sync) as client:
        huge = client.post(
            "/batches", content=b" " * (DEFAULT_MAX_BODY_BYTES + 1), headers={"Content-Type": "application/json"}
        )
        assert (huge.status_code, huge.json()) == (
            413,
            {"detail": f"the body exceeds {DEFAULT_MAX_BODY_BYTES} bytes: split the batch"},
        )
    assert sync.spool.pending() == []


def test_redelivery_changes_nothing_and_a_reused_id_conflicts(served: Callable[..., HttpCrmSync]) -> None:
    sync = served()
    with api(sync) as client:
        first = client.post("/batches", json=batch("b-1", GOOD_ROWS))
        (path,) = sync.spool.pending()
        stored = path.read_bytes()
        again = client.post(
            "/batches",
            content=json.dumps(batch("b-1", GOOD_ROWS), indent=4),
            headers={"Content-Type": "application/json"},
        )
        assert (first.status_code, again.status_code) == (202, 200)
        assert again.json() == first.json()
        conflict = client.post("/batches", json=batch("b-1", GOOD_ROWS[:2]))
        assert conflict.status_code == 409
        assert conflict.json() == {
            "detail": "batch 'b-1' was already received with different content; use a new batch_id"
        }
        assert sync.spool.pending() == [path]
        assert path.read_bytes() == stored
        (fetched,) = sync.fetch()
        sync.acknowledge(fetched)
        assert client.post("/batches", json=batch("b-1", GOOD_ROWS)).json() == first.json() | {"status": "imported"}
        assert list(sync.fetch()) == []
        assert client.get("/batches/nope").status_code == 404


def test_concurrent_redeliveries_store_one_batch(served: Callable[..., HttpCrmSync]) -> None:
    sync = served()
    codes: list[int] = []

    def push() -> None:
        with api(sync) as client:
            codes.append(client.post("/batches", json=batch("b-1", GOOD_ROWS)).status_code)

    threads = [threading.Thread(target=push) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [200] * 7 + [202]
    assert len(sync.spool.pending()) == 1


def activities(*seqs: int, creditor: str = "BCO") -> list[Activity]:
    at = datetime(2026, 3, 2, 14, 5, 30, tzinfo=UTC)
    return [
        Activity(seq, ActivityKind.PROMISE_TO_PAY, at, creditor, "TARJETAS", f"A-{seq}", amount=Decimal("10.50"))
        for seq in seqs
    ]


def test_creditors_pull_what_core_exported_never_skipping_nor_repeating(served: Callable[..., HttpCrmSync]) -> None:
    sync = served()
    context = sync.context
    assert isinstance(context, CapturingContext)
    context.exported += [*activities(1, 2), *activities(3, creditor="OTRO"), *activities(4, 5)]  # core's store
    with api(sync) as client:
        first = client.get("/activities", params={"after": 0, "limit": 2}).json()
        assert [a["seq"] for a in first["activities"]] == [1, 2]
        assert (first["next_after"], first["more"]) == (2, True)
        assert first["activities"][0]["amount"] == "10.50"
        assert client.get("/activities", params={"after": 0, "limit": 2}).json() == first, "the creditor crashed"
        rest = client.get("/activities", params={"after": 2, "limit": 2}).json()
        assert [a["seq"] for a in rest["activities"]] == [4, 5]
        assert (rest["next_after"], rest["more"]) == (5, False)
        done = client.get("/activities", params={"after": 5}).json()
        assert done == {"activities": [], "next_after": 5, "more": False}
        assert client.get("/activities", params={"after": -1}).status_code == 422
    assert pull_all(sync, OTRO_TOKEN) == [3]


class Receiver(ThreadingHTTPServer):
    """A creditor's webhook: answers the statuses in ``script`` in turn, then 200; records what it got."""

    def __init__(self, script: list[int]) -> None:
        self.script = script
        self.received: list[tuple[int, dict[str, str], Any]] = []
        super().__init__(("127.0.0.1", free_port()), _ReceiverHandler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/cartera/actividades?key=q-secret"


class _ReceiverHandler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        code = self.server.script.pop(0) if self.server.script else 200
        self.server.received.append((code, dict(self.headers), body))
        self.send_response(code)
        self.end_headers()

    def do_OPTIONS(self) -> None:
        self.send_response(405)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver([])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_webhook_gets_the_export_with_retries(served: Callable[..., HttpCrmSync], receiver: Receiver) -> None:
    sync = served(BCO={"webhook_url": receiver.url, "webhook_token": "hook-token-xyz"})
    object.__setattr__(sync.config, "webhook_backoff_s", 0.0)
    assert sync.check().ok, sync.check().detail
    receiver.script[:] = [503, 502]
    started = time.monotonic()
    sync.export([*activities(7, 8), *activities(9, creditor="OTRO")])
    assert time.monotonic() - started < 5
    assert [code for code, _, _ in receiver.received] == [503, 502, 200]
    _, headers, body = receiver.received[-1]
    assert headers["Authorization"] == "Bearer hook-token-xyz"
    assert headers["Idempotency-Key"] == "BCO-7-8"
    assert body["creditor"] == "BCO"
    assert (body["first_seq"], body["last_seq"]) == (7, 8)
    assert [a["seq"] for a in body["activities"]] == [7, 8]
    assert body["activities"][0]["due_date"] is None


def test_webhook_refusal_fails_the_export_and_the_pull_still_has_it(
    served: Callable[..., HttpCrmSync], receiver: Receiver
) -> None:
    sync = served(BCO={"webhook_url": receiver.url})
    context = sync.context
    assert isinstance(context, CapturingContext)
    context.exported += activities(1)  # core marks the batch it exports in its store before it calls export
    receiver.script[:] = [503, 503, 503, 400]
    with pytest.raises(WebhookFailed) as failed:
        sync.export(activities(1))
    assert pull_all(sync) == [1]
    assert str(failed.value) == (
        f"webhook http://127.0.0.1:{receiver.server_address[1]}/cartera/actividades refused the export "
        "(HTTP 503) after 3 tries"
    )
    assert "q-secret" not in str(failed.value)
    with pytest.raises(WebhookFailed, match=r"\(HTTP 400\) after 1 tries"):
        sync.export(activities(1))
    sync.export(activities(1))
    assert [code for code, _, _ in receiver.received] == [503, 503, 503, 400, 200]
    assert pull_all(sync) == [1]


def test_check_names_what_does_not_answer(tmp_path: Path, served: Callable[..., HttpCrmSync]) -> None:
    idle = make_sync(tmp_path, f"http://127.0.0.1:{free_port()}")
    idle.start()
    result = idle.check()
    assert result.ok
    assert result.detail.endswith(
        "/plugins/crm_sync/v1 not listening now (the node serves it while it runs); 0 batch(es) waiting for import"
    )
    dead = f"http://127.0.0.1:{free_port()}/hook"
    sync = served(BCO={"webhook_url": dead})
    assert sync.check().detail == f"webhook {dead} unreachable: ConnectError"
    assert not sync.check().ok


def test_committed_openapi_document_is_current() -> None:
    assert OPENAPI_FILE.read_text(encoding="utf-8") == render(), (
        "docs/creditor-api.openapi.json is stale: python -m cartera.plugins.crm_sync.http.openapi > "
        "docs/creditor-api.openapi.json"
    )


def test_codes_follow_the_stores_allow_list_whole() -> None:
    """A creditor or portfolio code the store takes (``@`` included) is one the API takes; nothing else is, even
    around a valid one: the API's own pattern lacked ``@``, so a portfolio imported from a file could not be
    pushed."""
    HttpApiConfig.model_validate({"creditors": {"BCO@CO": {"token": BCO_TOKEN}}})
    with pytest.raises(ValidationError, match="creditor code 'BCO CO'"):
        HttpApiConfig.model_validate({"creditors": {"BCO CO": {"token": BCO_TOKEN}}})
    batch = {"batch_id": "b@1", "creditor": "BCO@CO", "portfolio": "TARJETAS@2026", "rows": [row("A-1")]}
    assert BatchIn.model_validate(batch).portfolio == "TARJETAS@2026"
    for field in ("batch_id", "creditor", "portfolio"):
        with pytest.raises(ValidationError, match=field):
            BatchIn.model_validate(batch | {field: "ok/../x"})


def test_registered_under_http() -> None:
    registry: AdapterRegistry[CrmSync[Any]] = AdapterRegistry("crm_sync", CrmSync)
    cartera_register_crm_syncs(registry)
    assert registry.get("http") is HttpCrmSync


HTTP_SITE = """
[sites.t.crm_sync]
plugin = "http"
[sites.t.crm_sync.creditors.BANCO]
token = "${CARTERA_TEST_BANCO_TOKEN}"
"""


def http_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database: str | None = None) -> Path:
    monkeypatch.setenv("CARTERA_TEST_BANCO_TOKEN", BCO_TOKEN)
    config = write_sites(tmp_path, database=database)
    text = config.read_text(encoding="utf-8")
    csv_section = text[text.index("[sites.t.crm_sync]") :]
    config.write_text(text.replace(csv_section, HTTP_SITE.lstrip()), encoding="utf-8")
    return config


def node_api(node: Node) -> httpx.Client:
    base = f"{node.site.section.web.base_url}{PLUGIN_PREFIX}/crm_sync/v1"
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {BCO_TOKEN}"}, timeout=10)


def test_import_crash_before_acknowledge_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_node: Callable[..., Node]
) -> None:
    node = open_node(http_site(tmp_path, monkeypatch))
    sync = node.adapter("crm_sync", HttpCrmSync)
    assert sync.spool.save(BatchIn.model_validate(batch("b-1", GOOD_ROWS, creditor="BANCO")))[1]
    (fetched,) = sync.fetch()
    first = node.importer.import_batch(fetched, actor="sync")  # then the node dies before acknowledge
    assert (first.new, len(first.quarantined)) == (4, 1)
    run = node.creditor_sync().run_once()
    assert [report.already_imported for report in run.imports] == [True]
    assert list(sync.fetch()) == []
    with node.db.session() as session:
        assert session.scalar(select(func.count()).select_from(Account)) == 4


def run_cycle(node: Node) -> None:
    """A whole node serving the API on its port: errors as documented, a batch imported, the export pulled."""
    runner = threading.Thread(target=node.run, kwargs={"duration": 60})
    runner.start()
    try:
        with node_api(node) as client:
            _wait_for(lambda: _answers(client), bool)
            wrong = client.get("/activities", headers={"Authorization": "Bearer nope", "Accept": "text/html"})
            assert (wrong.status_code, wrong.json()) == (401, {"detail": "unknown token"})
            shape = client.post("/batches", json={"batch_id": "x", "creditor": "BANCO", "portfolio": "T", "rows": 1})
            assert (shape.status_code, shape.json()["detail"][0]["loc"]) == (422, ["body", "rows"])
            rows = [*GOOD_ROWS[:3], row("BCO-000104", "12-AB"), row("BCO-000105", balance="-1")]
            pushed = client.post("/batches", json=batch("cycle-1", rows, creditor="BANCO"))
            assert pushed.status_code == 202, pushed.text
            assert pushed.json()["rejected"] == [
                {"index": 4, "field": "balance", "reason": "Input should be greater than or equal to 0"}
            ]
            result = _wait_for(lambda: client.get("/batches/cycle-1").json(), lambda r: r["status"] == "imported")
            assert result["status"] == "imported"
            assert [(r["index"], r["field"]) for r in result["rejected"]] == [(3, "phone1"), (4, "balance")]
            assert "12-AB" in result["rejected"][0]["reason"]
            payment = {"account_ref": "BCO-000101", "action": "payment", "payment_amount": "50000"}
            assert client.post("/batches", json=batch("cycle-2", [payment], creditor="BANCO")).status_code == 202
            page = _wait_for(
                lambda: client.get("/activities", params={"limit": 1000}).json(),
                lambda p: any(a["kind"] == "payment" for a in p["activities"]),
            )
            seqs = [a["seq"] for a in page["activities"]]
            assert seqs == sorted(set(seqs))
            payments = [(a["account_ref"], a["amount"]) for a in page["activities"] if a["kind"] == "payment"]
            assert payments == [("BCO-000101", "50000.00")]
            assert client.post("/batches", json=batch("cycle-2", [payment], creditor="BANCO")).status_code == 200
    finally:
        node.stop()
        runner.join(30)
    with node.db.session() as session:
        balances = dict(session.execute(select(Account.ref, Account.balance)).all())
        quarantined = session.execute(select(QuarantinedRow.line, QuarantinedRow.field)).all()
    assert balances == {"BCO-000101": Decimal("1200000.50"), "BCO-000102": 180000, "BCO-000103": 12500000}
    assert sorted(quarantined) == [(4, "phone1"), (5, "balance")]


def _answers(client: httpx.Client) -> bool:
    try:
        return client.get("/health").status_code == 200
    except httpx.TransportError:
        return False


def test_whole_node_imports_pushed_batches_and_serves_the_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_node: Callable[..., Node]
) -> None:
    run_cycle(open_node(http_site(tmp_path, monkeypatch)))


@pytest.mark.postgres
def test_whole_node_on_postgres(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_node: Callable[..., Node], postgres_url: str
) -> None:
    run_cycle(open_node(http_site(tmp_path, monkeypatch, database=postgres_url)))


def _wait_for(read: Callable[[], Any], done: Callable[[Any], bool], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_a_stored_batch_rejected_whole_answers_rejected(
    served: Callable[..., HttpCrmSync], tmp_path: Path, hooks: Hooks
) -> None:
    adapter = served()
    with api(adapter) as client:
        assert client.post("/batches", json=batch("2026-03-02-9", GOOD_ROWS)).status_code == 202
        (path,) = adapter.spool.pending()
        path.write_bytes(path.read_bytes()[:40])  # damaged on disk after it was stored
        db = Database(f"sqlite:///{tmp_path / 'store.db'}")
        db.migrate()
        try:
            importer = AssignmentImporter("t", "CO", db, SimulatedClock(NOW, 1.0), hooks)
            job = CreditorSync(adapter, importer, ActivityExporter("t", db, adapter))
            assert [len(run.rejected) for run in (job.run_once(), job.run_once())] == [1, 0]
        finally:
            db.dispose()
        result = client.get("/batches/2026-03-02-9").json()
    assert (result["status"], result["creditor"], result["rows"]) == ("rejected", "BCO", 0)
    (rejected,) = result["rejected"]
    assert (rejected["index"], rejected["field"]) == (-1, "file")
    assert rejected["reason"].startswith("not a JSON batch")
    assert [p.name for p in (adapter.spool.root / "BCO" / "rejected").iterdir()] == [path.name]


def test_a_stored_batch_outside_the_creditors_portfolios_now_is_rejected_by_the_sync(
    tmp_path: Path, hooks: Hooks
) -> None:
    adapter = make_sync(tmp_path, "http://127.0.0.1:9")
    adapter.start()
    # Pushed while BCO's portfolios included CONSUMO; the operator then narrowed them to TARJETAS.
    assert adapter.spool.save(BatchIn.model_validate(batch("b-1", GOOD_ROWS, portfolio="CONSUMO")))[1]
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    db.migrate()
    try:
        importer = AssignmentImporter("t", "CO", db, SimulatedClock(NOW, 1.0), hooks)
        run = CreditorSync(adapter, importer, ActivityExporter("t", db, adapter)).run_once()
        with db.session() as session:
            assert session.scalar(select(func.count()).select_from(Account)) == 0
    finally:
        db.dispose()
        adapter.stop()
    (reason,) = run.rejected
    assert "line 1: portfolio: creditor 'BCO' may not deliver to portfolio 'CONSUMO'" in reason
    result = adapter.spool.result("BCO", "b-1")
    assert result is not None
    assert result.status == "rejected"
    assert [(row.index, row.field) for row in result.rejected] == [(0, "file")]


@pytest.mark.abuse
def test_a_payment_dated_after_the_day_of_import_is_rejected_with_its_index(tmp_path: Path, hooks: Hooks) -> None:
    adapter = make_sync(tmp_path, "http://127.0.0.1:9")
    adapter.start()
    typo = {"account_ref": "BCO-000101", "action": "payment", "payment_amount": "5", "paid_on": "2062-11-23"}
    assert adapter.spool.save(BatchIn.model_validate(batch("b-1", [GOOD_ROWS[0], typo])))[1]
    db = Database(f"sqlite:///{tmp_path / 'store.db'}")
    db.migrate()
    try:
        importer = AssignmentImporter("t", "CO", db, SimulatedClock(NOW, 1.0), hooks)
        CreditorSync(adapter, importer, ActivityExporter("t", db, adapter)).run_once()
        with db.session() as session:
            assert session.scalar(select(Account.balance)) == Decimal("1250000.50")
    finally:
        db.dispose()
        adapter.stop()
    result = adapter.spool.result("BCO", "b-1")
    assert result is not None
    assert result.status == "imported"
    assert [(row.index, row.field, row.reason) for row in result.rejected] == [
        (1, "paid_on", "payment dated 2062-11-23, after the day of import 2026-03-02")
    ]
