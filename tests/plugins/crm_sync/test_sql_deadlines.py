"""The ``sql`` crm_sync gives up on a creditor database that stops answering (round 18 G1): a server that accepts
and never answers, an answer that stalls mid-way, a view whose function ignores its cancel. Before, each held the
sync, ``check`` and the node's stop for ever; ``statement_timeout_s`` is enforced by the server, and only an honest,
reachable one."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from cartera.node import Node
from cartera.plugins.crm_sync.sql.client import CreditorDatabaseError, DeadlinePassed
from tests.conftest import write_sites
from tests.plugins.crm_sync import test_sql
from tests.plugins.crm_sync.test_sql import GOOD_ROWS, SQL_SITE, insert_rows, make_sync

pytestmark = [pytest.mark.abuse, pytest.mark.postgres]

#: How long a call may take before the test calls it hung: far past each bound (statement_timeout_s = 1 and
#: 5 s of grace; a connect within 6 s), so a loaded machine does not fail it.
HUNG_S = 90


def returns(call: Callable[[], Any]) -> tuple[Any, BaseException | None]:
    """``call()`` in a daemon thread: its result or error, or a failed test when it hangs."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = call()
        except BaseException as exc:  # handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(HUNG_S)
    assert not thread.is_alive(), f"still waiting on the creditor database after {HUNG_S} s"
    return outcome.get("result"), outcome.get("error")


class _Listener:
    """A TCP server on 127.0.0.1 handing each connection to ``serve`` in a thread; closed with everything it opened."""

    def __init__(self, serve: Callable[[socket.socket], None]) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.accepted = threading.Event()
        self.sockets: list[socket.socket] = []
        self._serve = serve
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            self.sockets.append(client)
            self.accepted.set()
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def close(self) -> None:
        self.server.close()
        for sock in self.sockets:
            sock.close()


creditor_db = test_sql.creditor_db  # the fixture: the creditor's schema in a fresh database


@pytest.fixture
def blackhole() -> Iterator[_Listener]:
    """Accepts connections and never sends a byte."""
    listener = _Listener(lambda _client: None)
    yield listener
    listener.close()


@pytest.fixture
def stalling_proxy(postgres_url: str) -> Iterator[_Listener]:
    """Forwards to the PostgreSQL server, and once the client has sent the page's query (``dense_rank``) passes none
    of the server's answer on: a network that stalls mid-result."""
    host, port = sa.make_url(postgres_url).host, sa.make_url(postgres_url).port

    def serve(client: socket.socket) -> None:
        upstream = socket.create_connection((host or "127.0.0.1", port or 5432))
        listener.sockets.append(upstream)
        frozen = threading.Event()

        def pipe(source: socket.socket, sink: socket.socket, to_server: bool) -> None:
            try:
                while data := source.recv(65536):
                    if to_server and b"dense_rank" in data:
                        frozen.set()
                    if not to_server and frozen.is_set():
                        continue
                    sink.sendall(data)
            except OSError:
                pass

        threading.Thread(target=pipe, args=(upstream, client, False), daemon=True).start()
        pipe(client, upstream, True)

    listener = _Listener(serve)
    yield listener
    listener.close()


def url_at(postgres_url: str, port: int) -> str:
    return sa.make_url(postgres_url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


def test_a_server_that_never_answers_fails_the_sync_and_the_check(
    tmp_path: Path, postgres_url: str, blackhole: _Listener
) -> None:
    sync = make_sync(tmp_path, url_at(postgres_url, blackhole.port), statement_timeout_s=1)
    _, error = returns(lambda: list(sync.fetch()))
    assert isinstance(error, CreditorDatabaseError), error
    assert f"127.0.0.1:{blackhole.port}" in str(error)
    assert "no connection within connect_timeout = 6 s (for the columns of crm.asignaciones)" in str(error)
    assert blackhole.accepted.is_set()
    result, error = returns(sync.check)
    assert error is None, error
    assert not result.ok
    assert f"127.0.0.1:{blackhole.port}" in result.detail
    sync.stop()


def test_an_answer_that_stalls_mid_result_passes_its_deadline_and_nothing_is_acknowledged(
    tmp_path: Path, postgres_url: str, creditor_db: sa.Engine, stalling_proxy: _Listener
) -> None:
    insert_rows(creditor_db, GOOD_ROWS)
    sync = make_sync(tmp_path, url_at(postgres_url, stalling_proxy.port), statement_timeout_s=1)
    _, error = returns(lambda: list(sync.fetch()))
    assert isinstance(error, DeadlinePassed), error
    assert "view crm.asignaciones did not answer within its deadline of 6 s" in str(error)
    assert "[reading from the start]" in str(error)
    assert not (sync.context.data_dir / "position.json").exists()
    sync.stop()
    again = make_sync(tmp_path, postgres_url, statement_timeout_s=1)  # the network is back: the page is read again
    (batch,) = again.fetch()
    assert len(list(batch.items)) == len(GOOD_ROWS)
    again.stop()


def test_a_view_that_ignores_its_cancel_passes_its_deadline(
    tmp_path: Path, postgres_url: str, creditor_db: sa.Engine
) -> None:
    insert_rows(creditor_db, GOOD_ROWS)
    with creditor_db.begin() as connection:
        connection.execute(
            sa.text(
                "CREATE FUNCTION crm.stubborn(v bigint) RETURNS bigint LANGUAGE plpgsql AS $$ BEGIN LOOP BEGIN "
                "PERFORM pg_sleep(3600); EXCEPTION WHEN query_canceled THEN RAISE NOTICE 'ignored'; END; END LOOP; "
                "RETURN v; END $$"
            )
        )
        connection.execute(
            sa.text(
                "CREATE VIEW crm.terca AS SELECT cuenta, nombre, telefono1, saldo, crm.stubborn(version) AS version "
                "FROM crm.cartera"
            )
        )
    sync = make_sync(tmp_path, postgres_url, view="crm.terca", statement_timeout_s=1)
    _, error = returns(lambda: list(sync.fetch()))
    assert isinstance(error, DeadlinePassed), error
    assert "view crm.terca did not answer within its deadline" in str(error)
    assert "[reading from the start]" in str(error)
    result, error = returns(sync.check)
    assert error is None, error
    assert not result.ok
    assert "crm.terca" in result.detail
    assert "did not answer within its deadline" in result.detail
    sync.stop()
    stubborn = sa.text(
        "SELECT pid, state, query FROM pg_stat_activity "
        "WHERE datname = current_database() AND state = 'active' AND pid <> pg_backend_pid()"
    )
    for _ in range(HUNG_S):  # the server ends them too: it finds the node gone
        with creditor_db.connect() as connection:  # a transaction of its own: pg_stat_activity is read once in one
            running = connection.execute(stubborn).all()
        if not running:
            break
        time.sleep(1)
    assert not running, f"the statements the node gave up on still run: {running}"


def test_a_node_whose_creditor_database_never_answers_stops(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    open_node: Callable[..., Node],
    postgres_url: str,
    blackhole: _Listener,
) -> None:
    """The node's stop waited for ever on the sync job (and the vendor checks) hung on the creditor's database."""
    monkeypatch.setenv("CARTERA_TEST_CREDITOR_DB", url_at(postgres_url, blackhole.port))
    config = write_sites(tmp_path)
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text[: text.index("[sites.t.crm_sync]")] + SQL_SITE.format() + "statement_timeout_s = 1\n", encoding="utf-8"
    )
    node = open_node(config)
    running = threading.Thread(target=node.run, daemon=True)
    running.start()
    assert blackhole.accepted.wait(HUNG_S), "the node never connected to the creditor's database"
    node.stop()
    running.join(HUNG_S)
    assert not running.is_alive(), f"the node had not stopped {HUNG_S} s after it was asked to"
