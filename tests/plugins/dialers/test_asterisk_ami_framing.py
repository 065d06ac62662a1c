"""The AMI reader under abuse: any split of the stream into reads, garbage, unterminated and oversized messages.

A hostile AMI server here is a socket on 127.0.0.1 that says what the test tells it to.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from itertools import pairwise
from pathlib import Path
from queue import Queue
from string import ascii_letters, digits

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cartera.core.testing.context import CapturingContext
from cartera.plugins.dialers.asterisk_ami.client import AmiConnection, AmiUnreachable, Message, parse_fields
from cartera.plugins.dialers.asterisk_ami.config import AsteriskAmiConfig
from cartera.plugins.dialers.asterisk_ami.framing import MessageFramer, MessageTooLarge
from cartera.plugins.dialers.asterisk_ami.plugin import AsteriskAmiDialer

pytestmark = pytest.mark.abuse

BANNER = b"Asterisk Call Manager/11.0.0\r\n"
EVENTS = ("Hangup", "Newchannel", "OriginateResponse")


def read_all(stream: bytes, cuts: list[int], max_bytes: int = 1 << 20) -> tuple[list[str], bool]:
    """The messages a framer hands over when ``stream`` arrives cut at ``cuts``, and whether it was too large."""
    messages: list[str] = []
    framer = MessageFramer(messages.append, max_bytes)
    try:
        for start, end in pairwise([0, *sorted(cuts), len(stream)]):
            framer.feed(stream[start:end])
    except MessageTooLarge:
        return messages, True
    return messages, False


def events_of(stream: bytes, cuts: list[int]) -> list[Message]:
    """The events an AMI connection dispatches when ``stream`` arrives cut at ``cuts``."""
    seen: list[Message] = []
    connection = AmiConnection(
        "127.0.0.1", 1, handlers=dict.fromkeys(EVENTS, seen.append), on_lost=lambda _: None, max_message_bytes=1 << 16
    )
    for start, end in pairwise([0, *sorted(cuts), len(stream)]):
        connection.feed(stream[start:end])
    return seen


# --- defects found by hand -----------------------------------------------------------------------------------


def test_empty_lines_after_a_message_add_no_field() -> None:
    stream = b"Event: Hangup\r\nUniqueid: cartera-t-1\r\n\r\n\r\n"
    for cuts in ([], [len(stream) - 2], [len(stream) - 1]):
        assert events_of(stream, cuts) == [{"Event": "Hangup", "Uniqueid": "cartera-t-1"}]


class CountingBuffer(bytearray):
    """A read buffer that counts the bytes its searches for a message's end look at."""

    looked_at = 0

    def rfind(self, sub: object, start: int | None = 0, end: int | None = None) -> int:  # type: ignore[override]
        CountingBuffer.looked_at += len(self) - (start or 0)
        return super().rfind(sub, start, end)  # type: ignore[arg-type]


def test_an_unterminated_message_is_scanned_in_linear_time() -> None:
    """Re-scanning the whole buffer at each read took 1.1-1.5 s for 64 KiB in 1-byte reads (quadratic): each
    byte is now looked at a bounded number of times, however the message arrives."""
    framer = MessageFramer(lambda _: None, 1 << 20)
    framer._buffer = CountingBuffer()
    CountingBuffer.looked_at = 0
    fed = 1 << 16
    for _ in range(fed):
        framer.feed(b"x")
    assert CountingBuffer.looked_at <= 4 * fed, f"{CountingBuffer.looked_at} bytes looked at for {fed} read"


# --- a hostile AMI server ------------------------------------------------------------------------------------


@contextmanager
def hostile_ami(
    greeting: bytes = b"", answers: Mapping[str, bytes] | None = None
) -> Iterator[tuple[int, threading.Event]]:
    """A server on 127.0.0.1 that sends Asterisk's banner and ``greeting``, then answers each action named in
    ``answers`` with its bytes (``{id}`` replaced by the action's ActionID).

    Yields its port and an event set once the client closed the connection.
    """
    closed = threading.Event()
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(10)

        def serve() -> None:
            client, _ = server.accept()
            with client, suppress(OSError):
                client.settimeout(10)
                client.sendall(BANNER + greeting)
                pending = b""
                while chunk := client.recv(4096):
                    *actions, pending = (pending + chunk).split(b"\r\n\r\n")
                    for action in actions:
                        fields = parse_fields(action.decode())
                        answer = (answers or {}).get(fields.get("Action", ""), b"")
                        client.sendall(answer.replace(b"{id}", fields.get("ActionID", "").encode()))
                closed.set()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        try:
            yield server.getsockname()[1], closed
        finally:
            thread.join(15)


def test_a_message_over_the_limit_drops_the_connection() -> None:
    lost: Queue[str] = Queue()
    with hostile_ami(b"Event: Hangup\r\nUniqueid: " + b"x" * 70_000) as (port, closed):
        connection = AmiConnection("127.0.0.1", port, handlers={}, on_lost=lost.put, max_message_bytes=1 << 16)
        connection.connect()
        assert closed.wait(5), "the connection was kept"
        reason = lost.get(timeout=5)
    assert reason == "Asterisk sent a message longer than 65536 bytes (max_message_bytes); connection dropped"


def test_an_oversized_answer_to_login_fails_the_start_at_once(tmp_path: Path) -> None:
    config = AsteriskAmiConfig.model_validate(
        {"port": 1, "username": "cartera", "secret": "s3cret-value", "queue": "cobranza", "action_timeout_s": 30}
    )
    oversized = b"Response: Success\r\nActionID: {id}\r\nMessage: " + b"y" * (1 << 17)
    with hostile_ami(answers={"Login": oversized}) as (port, _):
        dialer = AsteriskAmiDialer(
            config.model_copy(update={"port": port, "max_message_bytes": 1 << 16}), CapturingContext(tmp_path)
        )
        began = time.monotonic()
        with pytest.raises(AmiUnreachable) as caught:
            dialer.start()
    assert time.monotonic() - began < 5, "the start waited for its action timeout"
    assert str(caught.value) == (
        f"Login: the connection to Asterisk at 127.0.0.1:{port} broke: Asterisk sent a message longer than "
        "65536 bytes (max_message_bytes); connection dropped"
    )


def test_a_list_cut_by_an_oversized_event_fails_at_once() -> None:
    answers = {
        "Login": b"Response: Success\r\nActionID: {id}\r\n\r\n",
        "QueueStatus": b"Response: Success\r\nActionID: {id}\r\n\r\n"
        b"Event: QueueParams\r\nActionID: {id}\r\nQueue: " + b"q" * 70_000,
    }
    with hostile_ami(answers=answers) as (port, _):
        connection = AmiConnection(
            "127.0.0.1", port, handlers={}, on_lost=lambda _: None, action_timeout=30, max_message_bytes=1 << 16
        )
        connection.connect()
        connection.login("cartera", "s3cret-value")
        began = time.monotonic()
        with pytest.raises(AmiUnreachable, match=r"^QueueStatus: the connection to Asterisk at .* broke: Asterisk"):
            connection.list_action("QueueStatus", "QueueStatusComplete")
        assert time.monotonic() - began < 5, "the list waited for its action timeout"
        connection.close()


# --- properties ----------------------------------------------------------------------------------------------

KEYS = st.text(ascii_letters + digits + "_-", min_size=1, max_size=12).filter(lambda key: key != "Event")
VALUES = st.text(st.characters(exclude_characters="\r\n", exclude_categories=["Cs"]), max_size=30)
AMI_EVENTS = st.builds(
    lambda name, fields: {"Event": name, **fields},
    st.sampled_from(EVENTS),
    st.dictionaries(KEYS, VALUES, max_size=6),
)


def encode(event: Message, blank_lines: int) -> bytes:
    """One message as Asterisk writes it, followed by ``blank_lines`` empty lines more (as TestEvent is)."""
    return ("".join(f"{key}: {value}\r\n" for key, value in event.items()) + "\r\n" * (1 + blank_lines)).encode()


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(AMI_EVENTS, st.integers(0, 3)), max_size=8), st.data())
def test_any_split_of_a_valid_stream_gives_exactly_its_events(
    sent: list[tuple[Message, int]], data: st.DataObject
) -> None:
    stream = b"".join(encode(event, blank_lines) for event, blank_lines in sent)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12), label="cuts")
    assert events_of(stream, cuts) == [event for event, _ in sent]
    messages = [encode(event, 0) for event, _ in sent]
    at_the_limit = max(map(len, messages), default=4)  # the longest message, its ending empty line included
    assert read_all(stream, cuts, at_the_limit) == ([message[:-4].decode() for message in messages], False)


GARBAGE = st.lists(
    st.one_of(
        st.sampled_from([b"\r\n", b"\r", b"\n", b": ", b"Event: ", b"Response: ", b"Hangup", b"ActionID: 1", b"\xff"]),
        st.binary(max_size=12),
    ),
    max_size=40,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(GARBAGE, st.data())
def test_garbage_gives_the_same_messages_however_it_is_read(stream: bytes, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12), label="cuts")
    max_bytes = data.draw(st.integers(8, 64), label="max_bytes")
    messages, too_large = read_all(stream, cuts, max_bytes)
    assert (messages, too_large) == read_all(stream, [], max_bytes)
    assert all(message and not message.startswith("\r\n") for message in messages)
    assert all(len(message.encode()) + 4 <= max_bytes for message in messages if "\ufffd" not in message)
    events_of(stream, cuts)  # parsing and dispatching raise nothing


@settings(max_examples=150, deadline=None)
@given(st.lists(AMI_EVENTS, min_size=1, max_size=6), st.integers(0, 5), st.data())
def test_an_oversized_message_stops_the_stream_after_the_ones_before_it(
    events: list[Message], oversized: int, data: st.DataObject
) -> None:
    oversized %= len(events)
    blocks = [encode(event, 0) for event in events]
    max_bytes = max(len(block) for block in blocks) + data.draw(st.integers(0, 8), label="slack")
    blocks[oversized] = blocks[oversized][:-4] + b"; " + b"z" * max_bytes + b"\r\n\r\n"
    stream = b"".join(blocks)
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12), label="cuts")
    messages, too_large = read_all(stream, cuts, max_bytes)
    assert too_large
    assert messages == [block[:-4].decode() for block in blocks[:oversized]]
