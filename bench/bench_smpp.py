"""SMPP through Jasmin: submit throughput and delivery-receipt round trip, plugin against bare smpplib.

Usage: ``.venv/bin/python bench/bench_smpp.py [--messages N] [--rounds R] [--latency N]``

Starts Jasmin (tests/peers/jasmin.py: Jasmin 0.11.1 in its own venv, its carrier upstream in this process)
and measures, in alternating rounds, each with its own SMPP account:

- bare smpplib, pipelined: every submit_sm written at once, then the responses read (Jasmin's ceiling for one
  session: no client-side wait at all);
- bare smpplib, stop-and-wait: one submit_sm, its response, the next (the same shape as ``send``);
- the plugin: ``SmppGateway.send`` in a loop (rate limit far above what is reached), ledger fsynced, and
  without fsync; and from 4 threads.

Then the receipt round trip, one message at a time: submit_sm to the delivery receipt's deliver_sm, bare and
through the plugin (send() to ``report_delivery``). The carrier holds each receipt back RECEIPT_DELAY_S.
Prints a Markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import smpplib.client
import smpplib.smpp

from cartera.core.models import SmsMessage
from cartera.core.testing.context import CapturingContext
from cartera.plugins.sms.smpp.config import SmppConfig
from cartera.plugins.sms.smpp.plugin import SmppGateway

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.peers: the peer's provisioning
from tests.peers.jasmin import RECEIPT_DELAY_S, Jasmin, running_jasmin

PASSWORD = "bench"
PHONE = "573001234567"
TEXT = "Recordatorio: su cuota vence hoy. Evite recargos."
_accounts = itertools.count(1)
_ids = itertools.count(1)


def _account(jasmin: Jasmin) -> str:
    uid = f"bench{next(_accounts):03d}"
    jasmin.add_user(uid, PASSWORD)
    return uid


class BareClient:
    """smpplib bound as a transceiver, reading by hand: answers receipts, counts responses."""

    def __init__(self, jasmin: Jasmin) -> None:
        self.client = smpplib.client.Client("127.0.0.1", jasmin.smpp_port, timeout=30, allow_unknown_opt_params=True)
        self.client.connect()
        self.client.bind_transceiver(system_id=_account(jasmin), password=PASSWORD)
        self.receipts: dict[str, float] = {}

    def close(self, receipts: int) -> None:
        """Unbind once ``receipts`` receipts arrived (Jasmin would retry the rest for a while, slowing the
        next runs)."""
        deadline = time.monotonic() + 60
        while len(self.receipts) < receipts and time.monotonic() < deadline:
            self.read_one()
        self.client.unbind()
        self.client.disconnect()

    def submit(self) -> Any:
        return self.client.send_message(
            source_addr_ton=5, source_addr="Bench", dest_addr_ton=1, dest_addr_npi=1, destination_addr=PHONE,
            short_message=TEXT.encode(), registered_delivery=1,
        )  # fmt: skip

    def read_response(self) -> Any:
        """The next submit_sm_resp; receipts read on the way are answered and timed."""
        while True:
            pdu = self.read_one()
            if pdu.command == "submit_sm_resp":
                return pdu

    def read_one(self) -> Any:
        """One PDU; a receipt is timed and answered, an enquire_link answered."""
        pdu = self.client.read_pdu()
        if pdu.command in ("deliver_sm", "enquire_link"):
            if pdu.command == "deliver_sm":
                self.receipts[pdu.receipted_message_id.decode()] = time.monotonic()
            response = smpplib.smpp.make_pdu(f"{pdu.command}_resp", client=self.client)
            response.sequence = pdu.sequence
            self.client.send_pdu(response)
        return pdu


def bare_pipelined(jasmin: Jasmin, n: int) -> float:
    bare = BareClient(jasmin)
    try:
        started = time.monotonic()
        for _ in range(n):
            bare.submit()
        ok = sum(bare.read_response().status == 0 for _ in range(n))
        elapsed = time.monotonic() - started
    finally:
        bare.close(n)
    assert ok == n, f"{n - ok} refused"
    return n / elapsed


def bare_stop_and_wait(jasmin: Jasmin, n: int) -> float:
    bare = BareClient(jasmin)
    try:
        started = time.monotonic()
        for _ in range(n):
            bare.submit()
            assert bare.read_response().status == 0
        elapsed = time.monotonic() - started
    finally:
        bare.close(n)
    return n / elapsed


def _gateway(jasmin: Jasmin, root: Path, fsync: bool) -> tuple[SmppGateway, CapturingContext]:
    context = CapturingContext(root / f"ctx{next(_ids)}")
    config = SmppConfig(
        host="127.0.0.1", port=jasmin.smpp_port, system_id=_account(jasmin), password=PASSWORD,
        source_addr="Bench", messages_per_second=10_000, burst=10_000, fsync=fsync,
    )  # fmt: skip
    gateway = SmppGateway(config, context)
    gateway.start()
    return gateway, context


def _message() -> SmsMessage:
    return SmsMessage(message_id=next(_ids), site="bench", phone=f"+{PHONE}", text=TEXT)


def plugin_loop(jasmin: Jasmin, root: Path, n: int, fsync: bool, threads: int = 1) -> float:
    gateway, context = _gateway(jasmin, root, fsync)
    try:
        gateway.check()
        per_thread = n // threads
        failures: list[str] = []

        def work() -> None:
            for _ in range(per_thread):
                result = gateway.send(_message())
                if result.state.value != "submitted":
                    failures.append(result.detail)

        workers = [threading.Thread(target=work) for _ in range(threads)]
        started = time.monotonic()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = time.monotonic() - started
        context.wait_for_deliveries(per_thread * threads, timeout=60)  # receipts in before unbinding
    finally:
        gateway.stop()
    assert not failures, failures[:3]
    return per_thread * threads / elapsed


def bare_round_trips(jasmin: Jasmin, n: int) -> list[float]:
    bare = BareClient(jasmin)
    times = []
    try:
        for _ in range(n):
            started = time.monotonic()
            bare.submit()
            smsc_id = bare.read_response().message_id.decode()
            while smsc_id not in bare.receipts:
                bare.read_one()
            times.append(bare.receipts[smsc_id] - started)
    finally:
        bare.close(n)
    return times


def plugin_round_trips(jasmin: Jasmin, root: Path, n: int) -> list[float]:
    gateway, context = _gateway(jasmin, root, fsync=True)
    times = []
    try:
        for count in range(1, n + 1):
            started = time.monotonic()
            gateway.send(_message())
            context.wait_for_deliveries(count, timeout=15)
            times.append(time.monotonic() - started)
    finally:
        gateway.stop()
    return times


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    return f"{statistics.median(values) * 1000:.1f} ms / {p95 * 1000:.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=400, help="messages per throughput round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--latency", type=int, default=40, help="messages for the receipt round trip")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running_jasmin(Path(tmp) / "jasmin") as jasmin:
        root = Path(tmp)
        paths: dict[str, Callable[[], float]] = {
            "bare smpplib, pipelined (ceiling)": lambda: bare_pipelined(jasmin, args.messages),
            "bare smpplib, stop-and-wait (baseline)": lambda: bare_stop_and_wait(jasmin, args.messages),
            "plugin send(), ledger fsynced": lambda: plugin_loop(jasmin, root, args.messages, fsync=True),
            "plugin send(), no fsync": lambda: plugin_loop(jasmin, root, args.messages, fsync=False),
            "plugin send() from 4 threads, fsynced": lambda: plugin_loop(jasmin, root, args.messages, True, 4),
        }
        rates: dict[str, list[float]] = {name: [] for name in paths}
        for round_ in range(args.rounds):
            for name, run in paths.items():
                rates[name].append(run())
                time.sleep(1.0)  # let Jasmin drain its receipts between runs
            print(f"round {round_ + 1}: " + ", ".join(f"{r[-1]:.0f}" for r in rates.values()), file=sys.stderr)
        baseline = statistics.median(rates["bare smpplib, stop-and-wait (baseline)"])
        print(f"| path | submit_sm/s (median of {args.rounds} x {args.messages}) | ratio to stop-and-wait |")
        print("| --- | --- | --- |")
        for name, values in rates.items():
            median = statistics.median(values)
            print(f"| {name} | {median:,.0f} | {median / baseline:.2f} |")
        bare = bare_round_trips(jasmin, args.latency)
        plugin = plugin_round_trips(jasmin, root, args.latency)
        print(f"\n| receipt round trip ({args.latency} messages, one at a time) | median / p95 |")
        print("| --- | --- |")
        print(f"| bare smpplib: submit_sm to the receipt's deliver_sm | {_ms(bare)} |")
        print(f"| plugin: send() to report_delivery | {_ms(plugin)} |")
        print(f"\n(the carrier holds each receipt back {RECEIPT_DELAY_S * 1000:.0f} ms)")


if __name__ == "__main__":
    main()
