"""Asterisk AMI: event parse+dispatch rate on a captured stream, and Originates per second against Asterisk.

Usage: ``.venv/bin/python bench/bench_ami.py COMMAND``

- ``parse [--events N] [--rounds R]``: feed ``bench/data/ami-events.bin.gz`` (one AMI session of a real
  Asterisk 22 with every event on, recorded by ``capture``) to each reader, in alternating rounds, and report
  medians and ratios. Every reader dispatches into the same call tracker and agent pool the dialer uses:

  - the plugin's path: ``AmiConnection.feed`` with the dialer's handlers (events it does not read are
    dropped by name, unparsed);
  - the plugin's reader parsing every event (a handler for every name in the stream);
  - bare asterisk-ami: its client's framing (``_next_pack``), ``Response``/``Event`` parsing and an event
    listener;
  - panoramisk: ``AMIProtocol.data_received`` → ``Message`` → ``Manager.dispatch`` (pattern ``*``).

- ``capture``: run Asterisk + SIPp (tests/peers/asterisk.py; needs root), record one AMI session with every
  event on while the plugin places calls of every outcome (and an agent pauses), and rewrite the capture.
- ``originate [--rates 25,50,100] [--seconds S]``: against Asterisk + SIPp (needs root), place calls paced at
  each rate through the plugin and through bare asterisk-ami, into a context that records, plays a tone for a
  second and hangs up; report Originate responses per second and lost responses (none arrived within 10 s)
  and, for the plugin, that every call was reported answered.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import itertools
import re
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from asterisk.ami import AMIClient, SimpleAction
from panoramisk.ami_protocol import AMIProtocol  # type: ignore[import-untyped, import-not-found, unused-ignore]
from panoramisk.manager import Manager  # type: ignore[import-untyped, import-not-found, unused-ignore]

from cartera.core.clock import SystemClock
from cartera.core.models import CallOutcome, CallRequest
from cartera.core.testing.context import CapturingContext
from cartera.plugins.dialers.asterisk_ami.agents import MEMBER_EVENTS, MEMBER_REMOVED, AgentPool
from cartera.plugins.dialers.asterisk_ami.calls import CallTracker
from cartera.plugins.dialers.asterisk_ami.client import AmiConnection, Message
from cartera.plugins.dialers.asterisk_ami.config import AsteriskAmiConfig
from cartera.plugins.dialers.asterisk_ami.plugin import AsteriskAmiDialer
from cartera.plugins.dialers.asterisk_ami.switch import channel_prefix, event_needles

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.peers: the peer's provisioning
from tests.peers.asterisk import DEBTOR_HANGS_UP, NUMBERS, QUEUE, AsteriskPeer, running_asterisk

CAPTURE = Path(__file__).resolve().parent / "data" / "ami-events.bin.gz"
CHUNK = 1 << 16  # bytes per recv, for every reader
SITE = "bench"  # the site whose calls the capture holds
_attempts = itertools.count(1)


# --- parse + dispatch ------------------------------------------------------------------------------------


class Target:
    """The dialer's call tracker and agent pool, with the capture's calls in flight again for each replay."""

    def __init__(self, stream: bytes) -> None:
        self.uniqueids = sorted(set(re.findall(r"Uniqueid: (cartera-[^\r]+)", stream.decode())))
        self.tracker = CallTracker(
            SystemClock(), on_end=lambda _: None, hang_up=lambda _: None, on_connect=lambda *_: None
        )
        self.pool = AgentPool(QUEUE)
        self.handlers: dict[str, Callable[[Message], None]] = {
            **self.tracker.handlers,
            **dict.fromkeys(MEMBER_EVENTS, self.pool.update),
            MEMBER_REMOVED: self.pool.remove,
        }

    def rearm(self) -> None:
        for uniqueid in self.uniqueids:
            self.tracker.admit(CallRequest(next(_attempts), SITE, NUMBERS[CallOutcome.ANSWERED]), uniqueid)

    def dispatch(self, name: str, event: Any) -> None:
        handler = self.handlers.get(name)
        if handler is not None:
            handler(event)


def chunks(data: bytes) -> list[bytes]:
    return [data[start : start + CHUNK] for start in range(0, len(data), CHUNK)]


def plugin_reader(stream: bytes, target: Target, replays: int, *, every_event: bool) -> Callable[[], None]:
    handlers = dict(target.handlers)
    if every_event:
        for name in set(re.findall(r"^Event: (\S+)", stream.decode(), re.MULTILINE)):
            handlers.setdefault(name, lambda _: None)
    needles = {} if every_event else event_needles(channel_prefix(SITE), QUEUE)
    connection = AmiConnection("127.0.0.1", 0, handlers=handlers, on_lost=lambda _: None, needles=needles)
    connection.finished = threading.Event()  # as connect() leaves it (a Goodbye response sets it)
    body = chunks(stream.partition(b"\r\n")[2])  # the banner is read at connect time

    def run() -> None:
        for _ in range(replays):
            target.rearm()
            for chunk in body:
                connection.feed(chunk)

    return run


class _Replay:
    """A socket whose peer already sent ``data``: ``recv`` returns it in pieces, then EOF."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._at = 0

    def recv(self, size: int) -> bytes:
        piece = self._data[self._at : self._at + size]
        self._at += len(piece)
        return piece

    def close(self) -> None:
        return None


def bare_asterisk_ami(stream: bytes, target: Target, replays: int) -> Callable[[], None]:
    client = AMIClient(buffer_size=CHUNK)
    client.add_event_listener(lambda event, **_: target.dispatch(event.name, event.keys))

    def run() -> None:
        for _ in range(replays):
            target.rearm()
            client._socket = _Replay(stream)
            client.finished = threading.Event()
            packs = client._next_pack()
            next(packs)  # the banner, as AMIClient.listen reads it
            for pack in packs:
                client.fire_recv_pack(pack)

    return run


def bare_panoramisk(stream: bytes, target: Target, replays: int) -> Callable[[], None]:
    manager = Manager(loop=asyncio.new_event_loop())
    manager.patterns.clear()  # its own FullyBooted callback would schedule a coroutine on a loop that never runs
    manager.callbacks.clear()
    manager.register_event("*", lambda _manager, message: target.dispatch(message["Event"], message))
    pieces = chunks(stream)

    def run() -> None:
        for _ in range(replays):
            target.rearm()
            protocol = AMIProtocol()
            protocol.connection_made(None)
            protocol.factory = manager
            for piece in pieces:
                protocol.data_received(piece)

    return run


def server_filtered(stream: bytes) -> bytes:
    """The capture as the dialer's session gets it: only the events its Filter lets through, and responses."""
    banner, _, body = stream.partition(b"\r\n")
    read = set(Target(stream).handlers)
    messages = [message.lstrip(b"\r\n") for message in body.split(b"\r\n\r\n")]  # TestEvent's extra CRLF
    kept = [
        message
        for message in messages
        if not message.startswith(b"Event: ") or message[7:].partition(b"\r\n")[0].decode() in read
    ]
    return banner + b"\r\n" + b"\r\n\r\n".join(kept)


READERS = (
    "plugin path (only events naming its calls parsed)",
    "plugin reader, every event parsed and dispatched",
    "bare asterisk-ami 0.1.7",
    "bare panoramisk 1.4",
)


def compare(title: str, stream: bytes, events: int, rounds: int) -> None:
    per_replay = stream.count(b"\r\n\r\n")
    replays = max(1, events // per_replay)
    total = per_replay * replays
    targets = {name: Target(stream) for name in READERS}
    readers = {
        READERS[0]: plugin_reader(stream, targets[READERS[0]], replays, every_event=False),
        READERS[1]: plugin_reader(stream, targets[READERS[1]], replays, every_event=True),
        READERS[2]: bare_asterisk_ami(stream, targets[READERS[2]], replays),
        READERS[3]: bare_panoramisk(stream, targets[READERS[3]], replays),
    }
    followed = {}
    for name, run in readers.items():
        run()  # warm up, and see whether the reader followed every call of the capture to its hangup
        calls = len(targets[name].uniqueids)
        followed[name] = f"{calls - targets[name].tracker.in_flight}/{calls}"  # (a replay re-admits by UNIQUEID)
    rates: dict[str, list[float]] = {name: [] for name in readers}
    for _ in range(rounds):
        for name, run in readers.items():
            began = time.perf_counter()
            run()
            rates[name].append(total / (time.perf_counter() - began))
    names = re.findall(r"^Event: (\S+)", stream.decode(), re.MULTILINE)
    read = sum(name in Target(stream).handlers for name in names)
    print(f"{title}: {len(stream):,} bytes, {per_replay:,} messages, {len(set(names))} event names, {read:,} events")
    print(f"the dialer reads; {replays} replays = {total:,} messages per round, {rounds} rounds, medians")
    baseline = statistics.median(rates[READERS[2]])
    print(f"  {'reader':<52} {'events/s':>10} {'ratio':>6}  calls seen to their Hangup")
    for name, values in rates.items():
        rate = statistics.median(values)
        print(f"  {name:<52} {rate:>10,.0f} {rate / baseline:>6.2f}  {followed[name]}")


def parse(events: int, rounds: int) -> None:
    stream = gzip.decompress(CAPTURE.read_bytes())
    compare("every event (the capture)", stream, events, rounds)
    compare("server-side filtered (what the dialer's session receives)", server_filtered(stream), events, rounds)


# --- capture ------------------------------------------------------------------------------------------------


def capture() -> None:
    with running_asterisk(agents=6, talk_seconds=1) as peer:
        recorded = bytearray()
        session = socket.create_connection(("127.0.0.1", peer.ami_port))

        def record() -> None:
            while data := session.recv(CHUNK):
                recorded.extend(data)

        reader = threading.Thread(target=record)
        reader.start()
        session.sendall(f"Action: Login\r\nUsername: cartera\r\nSecret: {peer.ami_secret}\r\n\r\n".encode())
        numbers = [NUMBERS[CallOutcome.ANSWERED]] * 20 + [DEBTOR_HANGS_UP] * 2
        numbers += [number for outcome, number in NUMBERS.items() if outcome is not CallOutcome.ANSWERED] * 2
        with tempfile.TemporaryDirectory() as scratch:
            context = CapturingContext(Path(scratch), site=SITE)
            dialer = AsteriskAmiDialer(
                AsteriskAmiConfig.model_validate(
                    peer.dialer_settings(dial_ratio=2.0, ring_timeout_s=15, abandon_after_s=30)
                ),
                context,
            )
            dialer.start()
            for index, number in enumerate(numbers):
                while dialer.capacity() <= 0:
                    time.sleep(0.01)
                dialer.place_call(CallRequest(index + 1, "bench", number))
                if index == len(numbers) // 2:
                    peer.action("QueuePause", Queue=QUEUE, Interface="Local/01@agent-phones/n", Paused="true")
            context.wait_for_calls(len(numbers), 120)
            peer.action("QueuePause", Queue=QUEUE, Interface="Local/01@agent-phones/n", Paused="false")
            dialer.stop()
        time.sleep(0.5)
        session.sendall(b"Action: Logoff\r\n\r\n")
        reader.join(10)
        session.close()
    secret = peer.ami_secret.encode()
    assert secret not in recorded, "the capture holds the AMI secret"
    CAPTURE.parent.mkdir(exist_ok=True)
    CAPTURE.write_bytes(gzip.compress(bytes(recorded), mtime=0))
    messages = recorded.count(b"\r\n\r\n")
    print(f"{CAPTURE}: {len(recorded):,} bytes, {messages:,} messages, {len(numbers)} calls")


# --- originates per second ----------------------------------------------------------------------------------


@dataclass
class Run:
    sent: int
    answered: int  # Originate responses that arrived
    lost: int
    refused: int
    elapsed: float  # from the first send to the last response
    reported_answered: int | None = None

    @property
    def rate(self) -> float:
        return self.answered / self.elapsed if self.elapsed else 0.0


def paced(count: int, rate: float, send: Callable[[int], None]) -> float:
    began = time.monotonic()
    for index in range(count):
        delay = began + index / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        send(index)
    return began


def wait_idle(peer: AsteriskPeer, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while peer.debtor_channels() and time.monotonic() < deadline:
        time.sleep(0.2)


def plugin_originates(peer: AsteriskPeer, rate: float, count: int) -> Run:
    with tempfile.TemporaryDirectory() as scratch:
        context = CapturingContext(Path(scratch))
        settings = peer.dialer_settings(context="short-call", ring_timeout_s=15, action_timeout_s=10)
        dialer = AsteriskAmiDialer(AsteriskAmiConfig.model_validate(settings), context)
        dialer.start()
        switch = dialer._switch
        answers: dict[int, tuple[float, bool]] = {}
        original = switch._originate_answer

        def timed(call: Any, response: Any) -> None:  # instrumentation: when each Originate's response arrived
            answers[call.request.attempt_id] = (time.monotonic(), response.is_error())
            original(call, response)

        switch._originate_answer = timed  # type: ignore[method-assign]
        base = next(_attempts) * 100_000
        began = paced(
            count, rate, lambda i: dialer.place_call(CallRequest(base + i, "bench", NUMBERS[CallOutcome.ANSWERED]))
        )
        deadline = time.monotonic() + 10
        while len(answers) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        context.wait_for_calls(count, 120)
        dialer.stop()
    last = max((at for at, _ in answers.values()), default=began)
    reported = sum(result.outcome is CallOutcome.ANSWERED for result in context.calls)
    causes = Counter(result.raw_cause for result in context.calls if result.outcome is not CallOutcome.ANSWERED)
    for cause, times in causes.most_common(3):
        print(f"    not answered: {times} x {cause}")
    refused = sum(error for _, error in answers.values())
    return Run(count, len(answers), count - len(answers), refused, last - began, reported)


def bare_originates(peer: AsteriskPeer, rate: float, count: int) -> Run:
    client = AMIClient(address="127.0.0.1", port=peer.ami_port, timeout=10)
    client.login(username="cartera", secret=peer.ami_secret).response  # noqa: B018
    answers: dict[int, tuple[float, bool]] = {}
    base = next(_attempts) * 100_000

    def send(index: int) -> None:
        def answered(response: Any) -> None:
            answers[index] = (time.monotonic(), response.is_error())

        action = SimpleAction(
            "Originate",
            Channel=f"PJSIP/{NUMBERS[CallOutcome.ANSWERED]}@carrier",
            Context="short-call",
            Exten="s",
            Priority="1",
            Timeout="10000",
            Async="true",
            ActionID=f"bare-{base + index}",
            ChannelId=f"bare-{base + index}",
        )
        client.send_action(action, callback=answered)

    began = paced(count, rate, send)
    deadline = time.monotonic() + 10
    while len(answers) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    client.logoff()
    client.disconnect()
    last = max((at for at, _ in answers.values()), default=began)
    return Run(count, len(answers), count - len(answers), sum(e for _, e in answers.values()), last - began)


def originate(rates: list[float], seconds: float) -> None:
    with running_asterisk(agents=4, talk_seconds=1, rtp_ports=4000) as peer:
        print(
            f"{'target/s':>8} {'path':<18} {'sent':>5} {'responses':>9} {'lost':>4} {'refused':>7} "
            f"{'responses/s':>11} {'calls answered':>14}"
        )
        for rate in rates:
            count = round(rate * seconds)
            for name, measure in (("plugin", plugin_originates), ("bare asterisk-ami", bare_originates)):
                run = measure(peer, rate, count)
                wait_idle(peer)
                answered = "-" if run.reported_answered is None else f"{run.reported_answered}/{run.sent}"
                print(
                    f"{rate:>8g} {name:<18} {run.sent:>5} {run.answered:>9} {run.lost:>4} {run.refused:>7} "
                    f"{run.rate:>11.1f} {answered:>14}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    parse_command = commands.add_parser("parse")
    parse_command.add_argument("--events", type=int, default=200_000)
    parse_command.add_argument("--rounds", type=int, default=5)
    commands.add_parser("capture")
    originate_command = commands.add_parser("originate")
    originate_command.add_argument("--rates", default="25,50,100,200")
    originate_command.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()
    if args.command == "parse":
        parse(args.events, args.rounds)
    elif args.command == "capture":
        capture()
    else:
        originate([float(rate) for rate in args.rates.split(",")], args.seconds)


if __name__ == "__main__":
    main()
