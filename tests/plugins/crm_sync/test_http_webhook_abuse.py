"""A hostile creditor webhook on 127.0.0.1: a huge answer must not exhaust memory, a trickling one must not
hold a delivery (and the sync job, and shutdown) past the total deadline."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cartera.core.models import ActivityKind
from cartera.core.store.schema import Account, Creditor, Debtor, Portfolio
from cartera.node import Node
from cartera.plugins.crm_sync.http import plugin
from cartera.plugins.crm_sync.http.client import Webhook, WebhookFailed
from cartera.plugins.crm_sync.http.config import HttpApiConfig
from cartera.portfolio.export import add_activity
from tests.peers.net import free_port
from tests.plugins.crm_sync.test_http import (
    GOOD_ROWS,
    NOW,
    OTRO_TOKEN,
    _answers,
    _wait_for,
    batch,
    http_site,
    make_sync,
    node_api,
    row,
)

pytestmark = pytest.mark.abuse

BIG = 300 << 20


def _vm_hwm_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


class Hostile:
    """Answers every request on a raw socket: ``big`` sends a 200 with a 300 MB body as fast as it can;
    ``trickle`` announces 1000 bytes and sends one every 0.2 s (for 6 s at most, then hangs up);
    ``headers`` sends its status line, then a header one byte a second (for 10 s, then ends the answer)."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/hook"
        self.paths: list[str] = []  #: of each request, in the order they came
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(1)
                self.paths.append(conn.recv(65536).split(b" ", 2)[1].decode())
                if self.mode == "big":
                    conn.sendall(f"HTTP/1.1 200 OK\r\nContent-Length: {BIG}\r\n\r\n".encode())
                    chunk = b"x" * (1 << 20)
                    for _ in range(BIG >> 20):
                        if self.stop.is_set():
                            return
                        conn.sendall(chunk)
                elif self.mode == "headers":
                    conn.sendall(b"HTTP/1.1 200 OK\r\n")
                    for byte in b"X-Slow: " + b"a" * 2:
                        if self.stop.wait(1):
                            return
                        conn.sendall(bytes([byte]))
                    conn.sendall(b"\r\nContent-Length: 0\r\n\r\n")
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                    ends = time.monotonic() + 6
                    while time.monotonic() < ends and not self.stop.is_set():
                        conn.sendall(b"x")
                        time.sleep(0.2)
            except OSError:
                return

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        self.listener.close()


@pytest.fixture
def hostile(request: pytest.FixtureRequest) -> Iterator[Hostile]:
    server = Hostile(request.param)
    yield server
    server.close()


@pytest.mark.parametrize("hostile", ["big"], indirect=True)
def test_a_huge_answer_is_not_read_into_memory(hostile: Hostile) -> None:
    hook = Webhook(hostile.url, None, attempts=1, timeout_s=5.0, backoff_s=0.0, deadline_s=10.0)
    before = _vm_hwm_kib()
    hook.deliver(b"{}", "BCO-1-1")
    assert hook.probe(5.0) is None
    assert _vm_hwm_kib() - before < 64 << 10  # KiB: far below the 300 MB the answers carry


@pytest.mark.parametrize("hostile", ["trickle"], indirect=True)
def test_a_trickling_answer_fails_the_delivery_within_the_deadline(hostile: Hostile) -> None:
    hook = Webhook(hostile.url, None, attempts=3, timeout_s=1.0, backoff_s=0.0, deadline_s=1.5)
    started = time.monotonic()
    with pytest.raises(WebhookFailed, match="deadline"):
        hook.deliver(b"{}", "BCO-1-1")
    assert time.monotonic() - started < 3.2
    started = time.monotonic()
    assert hook.probe(1.0) is not None
    assert time.monotonic() - started < 2.2


def _sockets_to(port: int) -> set[str]:
    """This process's open TCP sockets connected to 127.0.0.1:``port`` (their ``socket:[inode]`` links)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2] == f"0100007F:{port:04X}":
            inodes.add(f"socket:[{fields[9]}]")
    links = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            links.add(fd.readlink().name)
        except OSError:
            continue
    return inodes & links


@pytest.mark.parametrize("hostile", ["headers"], indirect=True)
def test_trickling_headers_fail_the_delivery_within_the_deadline(hostile: Hostile) -> None:
    """Each header byte comes well within the read timeout: only the delivery's deadline can end it."""
    port = int(hostile.url.split(":")[2].split("/")[0])
    threads = set(threading.enumerate())
    hook = Webhook(hostile.url, None, attempts=3, timeout_s=3.0, backoff_s=0.0, deadline_s=2.0)
    started = time.monotonic()
    with pytest.raises(WebhookFailed, match=r"deadline of 2 s passed"):
        hook.deliver(b"{}", "BCO-1-1")
    assert time.monotonic() - started < 2.0 + 1.0
    started = time.monotonic()
    assert hook.probe(1.5) == f"webhook {hostile.url} unreachable: answer not complete in 1.5 s"
    assert time.monotonic() - started < 1.5 + 1.0
    assert not _sockets_to(port)  # the cut connections are closed, not left to the server
    assert not [thread for thread in set(threading.enumerate()) - threads if thread.name.startswith("webhook")]


def test_the_deadline_is_a_setting_with_a_sane_default() -> None:
    config = HttpApiConfig.model_validate({"creditors": {"BCO": {"token": "t" * 24}}})
    assert config.webhook_deadline_s == 10.0


@pytest.mark.parametrize("hostile", ["trickle"], indirect=True)
def test_a_trickling_webhook_holds_back_neither_another_creditors_import_nor_shutdown(
    hostile: Hostile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_node: Callable[..., Node]
) -> None:
    config = http_site(tmp_path, monkeypatch)
    monkeypatch.setenv("CARTERA_TEST_OTRO_TOKEN", OTRO_TOKEN)
    with config.open("a", encoding="utf-8") as sites:
        sites.write(
            f'webhook_url = "{hostile.url}"\n'
            '[sites.t.crm_sync.creditors.OTRO]\ntoken = "${CARTERA_TEST_OTRO_TOKEN}"\n'
        )
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace('plugin = "http"\n', 'plugin = "http"\nwebhook_timeout_s = 1\nwebhook_deadline_s = 1.5\n'),
        encoding="utf-8",
    )
    node = open_node(config)
    runner = threading.Thread(target=node.run, kwargs={"duration": 120})
    runner.start()
    try:
        with node_api(node) as bco:
            _wait_for(lambda: _answers(bco), bool)
            assert bco.post("/batches", json=batch("b-1", GOOD_ROWS, creditor="BANCO")).status_code == 202
            payment = {"account_ref": "BCO-000101", "action": "payment", "payment_amount": "50000"}
            assert bco.post("/batches", json=batch("b-2", [payment], creditor="BANCO")).status_code == 202
            _wait_for(lambda: bco.get("/batches/b-2").json(), lambda r: r["status"] == "imported")
            time.sleep(1)  # the export to the trickling webhook is under way
            otro = httpx.Client(base_url=str(bco.base_url), headers={"Authorization": f"Bearer {OTRO_TOKEN}"})
            with otro:
                pushed = otro.post("/batches", json=batch("o-1", [row("OT-1")], creditor="OTRO", portfolio="P1"))
                assert pushed.status_code == 202, pushed.text
                started = time.monotonic()
                done = _wait_for(lambda: otro.get("/batches/o-1").json(), lambda r: r["status"] != "pending", 20)
                assert done["status"] == "imported", done
                assert time.monotonic() - started < 5
    finally:
        stopping = time.monotonic()
        node.stop()
        runner.join(30)
    assert not runner.is_alive()
    assert time.monotonic() - stopping < 8


@pytest.mark.parametrize("hostile", ["headers"], indirect=True)
def test_a_stopping_node_waits_for_one_failing_webhook_not_for_each_in_turn(
    hostile: Hostile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, open_node: Callable[..., Node]
) -> None:
    """Three creditors whose webhooks fail by their deadline: the sync run under way when the node is asked to stop
    ends with its current delivery, and the export on the way out gives up at its first failure. Each creditor's
    deadline in turn, twice, made the stop time grow with the number of failing creditors."""
    config = http_site(tmp_path, monkeypatch)
    monkeypatch.setenv("CARTERA_TEST_OTRO_TOKEN", OTRO_TOKEN)
    monkeypatch.setenv("CARTERA_TEST_TERCERO_TOKEN", "tercero-token-0123456789abcdef")
    text = config.read_text(encoding="utf-8")
    text = text.replace('plugin = "http"\n', 'plugin = "http"\nwebhook_timeout_s = 1\nwebhook_deadline_s = 1.5\n')
    text = text.replace("[sites.t.web]\n", "[sites.t.web]\nenabled = false\n")  # vendor checks: their own test
    text += f'webhook_url = "{hostile.url}/BANCO"\n'
    for code in ("OTRO", "TERCERO"):
        text += (
            f"[sites.t.crm_sync.creditors.{code}]\n"
            f'token = "${{CARTERA_TEST_{code}_TOKEN}}"\nwebhook_url = "{hostile.url}/{code}"\n'
        )
    config.write_text(text, encoding="utf-8")
    node = open_node(config)
    for code in ("BANCO", "OTRO", "TERCERO"):
        with node.db.session() as session:
            portfolio = Portfolio(creditor=Creditor(code=code), code="P", site="t", country="CO")
            debtor = Debtor(name="Ana")
            account = Account(portfolio=portfolio, ref=f"{code}-1", debtor=debtor, balance=1, currency="COP")
            session.add(account)
            account.updated_at = NOW
            add_activity(session, site="t", kind=ActivityKind.CALL_ATTEMPT, at=NOW, account=account)
    runner = threading.Thread(target=node.run, kwargs={"duration": 120})
    runner.start()
    try:
        _wait_for(lambda: list(hostile.paths), bool, 20)
        time.sleep(0.3)  # the export to BANCO's webhook is under way
    finally:
        stopping = time.monotonic()
        node.stop()
        runner.join(30)
    assert not runner.is_alive()
    took = time.monotonic() - stopping
    assert hostile.paths == ["/hook/BANCO", "/hook/BANCO"], took  # the sync run's delivery, the drain's
    assert took < 1.5 + 1.5 + 1.0


@pytest.mark.parametrize("hostile", ["headers"], indirect=True)
def test_checking_several_trickling_webhooks_takes_one_probe_timeout_not_one_each(
    hostile: Hostile, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The node's vendor checks (a scheduler job, which its stop waits for) probed each creditor's webhook in
    turn, up to 5 s each: three trickling webhooks held a stopping node for 15 s. Here a probe waits 2 s, still
    well within the 10 s the webhooks trickle for."""
    probe_s = 2.0
    monkeypatch.setattr(plugin, "PROBE_TIMEOUT_S", probe_s)
    creditors = {
        code: {"token": token, "webhook_url": f"{hostile.url}/{code}"}
        for code, token in (("BCO", "b" * 24), ("OTRO", "o" * 24), ("TERCERO", "t" * 24))
    }
    sync = make_sync(tmp_path, f"http://127.0.0.1:{free_port()}", **creditors)
    started = time.monotonic()
    result = sync.check()
    assert time.monotonic() - started < probe_s + 1.5
    assert not result.ok
    assert result.detail == "; ".join(
        f"webhook {hostile.url}/{code} unreachable: answer not complete in {probe_s:g} s" for code in creditors
    )
    assert sorted(hostile.paths) == [f"/hook/{code}" for code in creditors]
