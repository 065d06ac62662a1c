"""SMS through a real Kannel 1.4.5 (bearerbox + smsbox + fakesmsc, chrooted): the kannel plugin against Kannel's
own ceiling, in the same run on the same instance.

- Submit throughput: N texts from T threads, each with dlr-mask 31 and a dlr-url. Ceiling: Kannel's native
  HTTP client ``test_http`` (kannel-extras) firing the same sendsms requests, its delivery reports going to a
  bare stdlib HTTP sink. Cartera: ``KannelGateway.send`` from a thread pool, its reports going to the plugin's
  router on uvicorn (as in ``run``). For both: the time until smsbox accepted every request, until bearerbox
  handed every text to the SMSC (its ``sent`` counter), and until every "delivered" report came back.
- DLR round trip: one text at a time, from the submit call to the "delivered" report reaching the receiver;
  baseline: a raw ``http.client`` sendsms with the bare sink as receiver.

Run: ``PYTHONPATH=. .venv/bin/python bench/bench_sms_kannel.py [--messages 2000] [--threads 8]`` (root: the
Kannel root is built by scripts/peers/debian-root.sh). Prints a Markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import http.client
import http.server
import statistics
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from fastapi import FastAPI

from cartera.core.models import SmsMessage, SmsState
from cartera.core.testing.context import CapturingContext
from cartera.plugins.sms.kannel.config import KannelConfig
from cartera.plugins.sms.kannel.plugin import KannelGateway
from cartera.web.app import PLUGIN_PREFIX
from cartera.web.server import WebServer
from tests.peers.debian import chrooted
from tests.peers.kannel import USERNAME, KannelPeer, listening_port, running_kannel

TEXT = "Recordatorio: su cuota de la cuenta BCO-000105 vence hoy. Llamenos al 601 555 0100."
PHONE = "+573001234567"
TEST_HTTP = "/usr/lib/kannel/test/test_http"


class _Server(http.server.ThreadingHTTPServer):
    request_queue_size = 1024  # as uvicorn's backlog; the default 5 drops Kannel's burst of callbacks
    daemon_threads = True


class Sink:
    """A bare HTTP server recording when each "delivered" report (type 1) arrives, by message number."""

    def __init__(self) -> None:
        self.port = listening_port()
        self.delivered: dict[str, float] = {}
        self.count = 0
        self._changed = threading.Condition()
        sink = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                query = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
                if query.get("type") == ["1"]:
                    with sink._changed:
                        sink.delivered[query["msg"][0]] = time.monotonic()
                        sink.count += 1
                        sink._changed.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: object) -> None:
                pass

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, msg: str) -> str:
        return f"http://127.0.0.1:{self.port}/dlr?msg={msg}&type=%d"

    def wait(self, predicate: Callable[[], bool], timeout: float) -> None:
        with self._changed:
            if not self._changed.wait_for(predicate, timeout):
                raise RuntimeError(f"sink: timed out ({len(self.delivered)} delivered)")

    def __enter__(self) -> Sink:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def plugin_gateway(kannel: KannelPeer) -> Iterator[tuple[KannelGateway, CapturingContext]]:
    port = listening_port()
    context = CapturingContext(Path("/tmp/cartera-bench-sms"), base_url=f"http://127.0.0.1:{port}")
    config = KannelConfig.model_validate(kannel.gateway_settings(max_connections=32))
    gateway = KannelGateway(config, context)
    gateway.start()
    app = FastAPI()
    app.include_router(gateway.http_router(), prefix=f"{PLUGIN_PREFIX}/sms")
    try:
        with WebServer(app, "127.0.0.1", port):
            yield gateway, context
    finally:
        gateway.stop()


def delivered_count(context: CapturingContext) -> int:
    return sum(1 for r in list(context.deliveries) if r.state is SmsState.DELIVERED)


def delivered_at_least(context: CapturingContext, count: int) -> Callable[[], bool]:
    return lambda: delivered_count(context) >= count


def wait_sent(kannel: KannelPeer, target: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while kannel.counter(r"SMS: received \d+ \(\d+ queued\), sent (\d+)") < target:
        if time.monotonic() > deadline:
            raise RuntimeError("bearerbox did not send every text to the SMSC in time")
        time.sleep(0.02)


def native_throughput(kannel: KannelPeer, sink: Sink, messages: int, threads: int) -> dict[str, float]:
    """Kannel's test_http firing sendsms requests: each of ``threads`` threads makes ``messages/threads``."""
    query = urllib.parse.urlencode(
        {
            "username": USERNAME,
            "password": kannel.password,
            "from": "12345",
            "to": PHONE,
            "text": TEXT,
            "charset": "UTF-8",
            "coding": "0",
            "dlr-mask": "31",
            "dlr-url": sink.url("native"),
        }
    )
    sent_before = kannel.counter(r"SMS: received \d+ \(\d+ queued\), sent (\d+)")
    dlr_before = sink.count
    argv = [TEST_HTTP, "-q", "-v", "2", "-r", str(messages // threads), "-t", str(threads)]
    argv.append(f"{kannel.smsbox_url}/cgi-bin/sendsms?{query}")
    started = time.monotonic()
    with chrooted(kannel.root, argv, log=kannel.home / "test_http.log") as process:
        process.wait(600)
    accepted = time.monotonic() - started
    total = (messages // threads) * threads
    wait_sent(kannel, sent_before + total, 600)
    to_smsc = time.monotonic() - started
    sink.wait(lambda: sink.count >= dlr_before + total, 600)
    dlrs = time.monotonic() - started
    return {"messages": total, "accepted_s": accepted, "to_smsc_s": to_smsc, "dlr_s": dlrs}


def plugin_throughput(kannel: KannelPeer, messages: int, threads: int) -> dict[str, float]:
    with plugin_gateway(kannel) as (gateway, context):
        sent_before = kannel.counter(r"SMS: received \d+ \(\d+ queued\), sent (\d+)")
        batch = [SmsMessage(i, "bench", PHONE, TEXT) for i in range(1, messages + 1)]
        started = time.monotonic()
        with ThreadPoolExecutor(threads) as pool:
            states = list(pool.map(lambda m: gateway.send(m).state, batch))
        accepted = time.monotonic() - started
        refused = sum(state is not SmsState.SUBMITTED for state in states)
        if refused:
            raise RuntimeError(f"{refused} texts were not accepted")
        wait_sent(kannel, sent_before + messages, 600)
        to_smsc = time.monotonic() - started
        context.wait_until(lambda: delivered_count(context) >= messages, 600, "every delivered report")
        dlrs = time.monotonic() - started
    return {"messages": messages, "accepted_s": accepted, "to_smsc_s": to_smsc, "dlr_s": dlrs}


def plugin_round_trips(kannel: KannelPeer, samples: int) -> list[float]:
    times: list[float] = []
    with plugin_gateway(kannel) as (gateway, context):
        for i in range(1, samples + 1):
            started = time.monotonic()
            gateway.send(SmsMessage(i, "bench", PHONE, TEXT))
            context.wait_until(delivered_at_least(context, i), 30, f"the report of text {i}")
            times.append(time.monotonic() - started)
    return times


def raw_round_trips(kannel: KannelPeer, sink: Sink, samples: int) -> list[float]:
    times: list[float] = []
    host, port = "127.0.0.1", kannel.sendsms_port
    connection = http.client.HTTPConnection(host, port, timeout=30)
    base = sink.count
    for i in range(samples):
        msg = f"raw-{i}"
        query = urllib.parse.urlencode(
            {
                "username": USERNAME,
                "password": kannel.password,
                "from": "12345",
                "to": PHONE,
                "text": TEXT,
                "dlr-mask": "31",
                "dlr-url": sink.url(msg),
            }
        )
        started = time.monotonic()
        connection.request("GET", f"/cgi-bin/sendsms?{query}")
        connection.getresponse().read()
        sink.wait(lambda: sink.count > len(times) + base, 30)
        times.append(sink.delivered[msg] - started)
    connection.close()
    return times


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--samples", type=int, default=100, help="sequential texts for the round trip")
    args = parser.parse_args()
    with running_kannel(f"http://127.0.0.1:{listening_port()}/mo") as kannel, Sink() as sink:
        native = native_throughput(kannel, sink, args.messages, args.threads)
        ours = plugin_throughput(kannel, args.messages, args.threads)
        raw_rtt = raw_round_trips(kannel, sink, args.samples)
        our_rtt = plugin_round_trips(kannel, args.samples)
        version = subprocess.run(
            ["chroot", str(kannel.root), "dpkg-query", "-W", "-f", "${Version}", "kannel"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
    print(f"Kannel {version}, {args.messages} texts from {args.threads} threads; {args.samples} round trips\n")
    print("| path | accepted by smsbox | handed to the SMSC | delivered reports back | Cartera ÷ it |")
    print("| --- | --- | --- | --- | --- |")
    for name, run in (("Kannel `test_http` + bare sink (ceiling)", native), ("Cartera `kannel` plugin", ours)):
        rates = [run["messages"] / run[key] for key in ("accepted_s", "to_smsc_s", "dlr_s")]
        ratio = (ours["messages"] / ours["accepted_s"]) / (run["messages"] / run["accepted_s"])
        print(f"| {name} | {rates[0]:,.0f} msg/s | {rates[1]:,.0f} msg/s | {rates[2]:,.0f} msg/s | {ratio:.2f} |")
    print("\n| DLR round trip (one at a time) | p50 | p95 | max |")
    print("| --- | --- | --- | --- |")
    for name, times in (
        ("raw sendsms + bare sink (baseline)", raw_rtt),
        ("Cartera plugin + router on uvicorn", our_rtt),
    ):
        p50, p95 = statistics.median(times), percentile(times, 0.95)
        print(f"| {name} | {p50 * 1000:.1f} ms | {p95 * 1000:.1f} ms | {max(times) * 1000:.1f} ms |")


if __name__ == "__main__":
    main()
