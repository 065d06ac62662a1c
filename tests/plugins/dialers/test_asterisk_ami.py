"""The Asterisk AMI dialer: its parts on their own, then the real thing against Asterisk 22 and SIPp.

Tests marked ``asterisk`` run a real Asterisk 22 (tests/peers/asterisk.py) whose carrier endpoint dials a
SIPp UAS playing the debtors' phones; they skip with ``PEER UNAVAILABLE`` when it cannot be provisioned.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import wave
from array import array
from collections.abc import Callable, Iterator
from contextlib import suppress
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cartera.core.clock import SystemClock
from cartera.core.hooks import load_plugins
from cartera.core.models import CallOutcome, CallRequest, CallResult, UnfinishedCall
from cartera.core.registry import AdapterCatalog
from cartera.core.testing.context import CapturingContext
from cartera.core.testing.dialer import DialerConformance
from cartera.node import Node
from cartera.plugins.dialers.asterisk_ami.agents import MEMBER_EVENTS, MEMBER_REMOVED, AgentPool
from cartera.plugins.dialers.asterisk_ami.calls import CALL_EVENTS, MAX_NOTES, MAX_NOTES_CHARS, Call, CallTracker
from cartera.plugins.dialers.asterisk_ami.client import (
    AmiConnection,
    AmiError,
    AmiLoginFailed,
    AmiNotManager,
    AmiPermissionDenied,
    AmiUnreachable,
    Message,
    ami_int,
    parse_fields,
)
from cartera.plugins.dialers.asterisk_ami.config import AsteriskAmiConfig
from cartera.plugins.dialers.asterisk_ami.outcomes import MAX_RAW_CAUSE_CHARS, call_outcome, raw_cause
from cartera.plugins.dialers.asterisk_ami.plugin import AsteriskAmiDialer, cartera_register_dialers
from cartera.plugins.dialers.asterisk_ami.switch import event_needles
from tests.conftest import REPO, kill_site_with_calls_in_flight, placing, run_site_process, write_portfolio
from tests.peers.asterisk import (
    DEBTOR_HANGS_UP,
    IDENTIFICATION_HZ,
    MACHINE_GREETING,
    NUMBERS,
    PERSON_GREETING,
    READONLY_USER,
    AsteriskPeer,
    running_asterisk,
    tone_share,
    write_tone,
)
from tests.peers.net import free_port

pytestmark = pytest.mark.filterwarnings("ignore:notifyAll:DeprecationWarning")  # the bare asterisk-ami client

ANSWERS = NUMBERS[CallOutcome.ANSWERED]
AGENTS = 12
SETTINGS = {"username": "cartera", "secret": "s3cret-value", "queue": "cobranza"}

# --- without a peer ---------------------------------------------------------------------------------------


def test_registers_as_asterisk_ami() -> None:
    catalog = AdapterCatalog.empty()
    cartera_register_dialers(catalog.dialers)
    assert catalog.dialers.get("asterisk_ami") is AsteriskAmiDialer
    assert load_plugins(entry_points=False).collect_adapters().dialers.get("asterisk_ami") is AsteriskAmiDialer


@pytest.mark.parametrize(
    ("answered", "cause", "dial", "reason", "outcome"),
    [
        (True, 16, "ANSWER", "4", CallOutcome.ANSWERED),
        (False, 17, "BUSY", "0", CallOutcome.BUSY),
        (False, 19, None, None, CallOutcome.NO_ANSWER),
        (False, 21, "NOANSWER", "0", CallOutcome.REJECTED),
        (False, 1, "NOANSWER", "0", CallOutcome.INVALID_NUMBER),
        (False, 28, None, None, CallOutcome.INVALID_NUMBER),
        (False, 34, "CONGESTION", "0", CallOutcome.CONGESTION),
        (False, 38, "NOANSWER", "0", CallOutcome.FAILED),
        (False, 16, "NOANSWER", None, CallOutcome.NO_ANSWER),
        (False, 16, "CANCEL", None, CallOutcome.FAILED),
        (False, None, None, "5", CallOutcome.BUSY),
        (False, None, None, "0", CallOutcome.FAILED),
        (False, None, None, None, CallOutcome.FAILED),
    ],
)
def test_outcome_from_cause_then_dial_status_then_originate_reason(
    answered: bool, cause: int | None, dial: str | None, reason: str | None, outcome: CallOutcome
) -> None:
    assert call_outcome(answered=answered, cause=cause, dial_status=dial, originate_reason=reason) is outcome


def test_raw_cause_keeps_what_asterisk_said() -> None:
    said = partial(raw_cause, cause=None, cause_text="", dial_status=None, originate_response="Failure", note="")
    assert said(cause=17, cause_text="User busy", dial_status="BUSY", originate_reason="5") == "17 User busy, dial BUSY"
    assert said(originate_reason="0", note="no channel") == "originate Failure, reason 0 (not placed), no channel"
    assert said(originate_reason="7") == "originate Failure, reason 7"
    answered = said(dial_status="ANSWER", originate_response="Success", originate_reason="4", note="cut")
    assert answered == "dial ANSWER, cut", "the originate's words took room the dial status already filled"
    assert said(originate_response=None, originate_reason=None) == "Asterisk reported no cause"


def test_config_defaults_and_templates() -> None:
    config = AsteriskAmiConfig.model_validate(SETTINGS)
    assert (config.host, config.port, config.dial_ratio) == ("127.0.0.1", 5038, 1)
    assert config.channel == "PJSIP/{number}@carrier"
    assert "s3cret-value" not in repr(config)
    other = AsteriskAmiConfig.model_validate({**SETTINGS, "channel": "SIP/trunk/{digits}"})
    assert other.channel == "SIP/trunk/{digits}"


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"channel": "PJSIP/carrier"}, "must contain {digits} or {number}"),
        ({"recording_name": "call.wav"}, "must contain {uniqueid}"),
        ({"channel": "PJSIP/{phone}@carrier"}, "unknown field {phone}"),
        ({"recording_name": "{attempt}.wav"}, "unknown field {attempt}"),
        ({"queue": "cobranza\r\nAction: Originate"}, "String should match pattern"),
        ({"attempt_header": "Cartera-Attempt"}, "String should match pattern"),
        ({"dial_ratio": 0.5}, "greater than or equal to 1"),
        ({"ring_timeout_s": 14.9}, "a call rings at least 15 s before it is given up"),
        ({"abandon_after_s": 0}, "greater than or equal to 1"),
        ({"identification_message": "hello&goodbye"}, "String should match pattern"),
        ({"portfolio_messages": {"TARJETAS": "x"}}, "String should match pattern"),
        ({"no_such_key": 1}, "Extra inputs are not permitted"),
    ],
)
def test_config_rejects_bad_settings(settings: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AsteriskAmiConfig.model_validate({**SETTINGS, **settings})
    assert fragment in str(caught.value)


def test_reader_frames_messages_split_anywhere() -> None:
    seen: list[Message] = []
    stream = (
        "Event: TestEvent\r\nState: MIXMONITOR_END\r\n\r\n\r\n"  # one blank line too many, as Asterisk sends it
        "Event: Newexten\r\nChannel: PJSIP/x\r\nApplication: Wait\r\n\r\n\r\n"
        "Event: Hangup\r\nUniqueid: cartera-t-1\r\nCause: 17\r\nCause-txt: User busy\r\nEmpty: \r\n\r\n"
        "Event: Hangup\r\nUniqueid: cartera-t-2\r\nCause-txt: Número\r\n\r\n"
    ).encode()
    for size in (1, 7, 64, len(stream)):
        seen.clear()
        connection = AmiConnection("127.0.0.1", 1, handlers={"Hangup": seen.append}, on_lost=lambda _: None)
        for start in range(0, len(stream), size):
            connection.feed(stream[start : start + size])
        assert [event["Uniqueid"] for event in seen] == ["cartera-t-1", "cartera-t-2"]
    assert seen[0] == {
        "Event": "Hangup",
        "Uniqueid": "cartera-t-1",
        "Cause": "17",
        "Cause-txt": "User busy",
        "Empty": "",
    }
    assert seen[1]["Cause-txt"] == "Número"
    assert parse_fields("Response: Follows\r\nno colon here") == {"Response": "Follows", "no colon here": ""}


def test_a_failed_originate_naming_no_channel_reaches_its_call() -> None:
    """Asterisk answers an Originate that made no channel with ``Uniqueid: <unknown>`` unless it echoes the
    ChannelId (Asterisk 22 does): the call is found by its ActionID either way."""
    tracker = CallTracker(SystemClock(), on_end=lambda _: None, hang_up=lambda _: None, on_connect=lambda *_: None)
    call = tracker.admit(request(1), "cartera-t-1-abc")
    assert call is not None
    connection = AmiConnection(
        "127.0.0.1", 1, handlers=tracker.handlers, on_lost=lambda _: None, needles=event_needles("cartera-t", "q")
    )
    connection.feed(
        b"Event: OriginateResponse\r\nPrivilege: call,all\r\nActionID: cartera-t-1-abc\r\nResponse: Failure\r\n"
        b"Channel: PJSIP/+573005550001@nosuch\r\nContext: agents\r\nExten: s\r\nReason: 0\r\n"
        b"Uniqueid: <unknown>\r\nCallerIDNum: <unknown>\r\nCallerIDName: <unknown>\r\n\r\n"
    )
    assert call.originate_failed_at is not None, "the failed OriginateResponse was dropped"
    assert call.result().raw_cause == "originate Failure, reason 0 (not placed)"


def test_the_dialplans_user_events_settle_abandoned_and_machine_calls() -> None:
    """CarteraAbandoned (no agent within CARTERA_ABANDON_AFTER) and CarteraMachine (AMD) on our answered channel end
    the call abandoned or machine, unanswered and with no agent; a call an agent took stays answered; another
    UserEvent (the operator's own) changes nothing."""
    ended: list[Call] = []
    tracker = CallTracker(SystemClock(), on_end=ended.append, hang_up=lambda _: None, on_connect=lambda *_: None)
    for attempt in (1, 2, 3, 4):
        tracker.admit(request(attempt), f"u-{attempt}")
        tracker.on_new_state({"Uniqueid": f"u-{attempt}", "ChannelState": "6"})
    handle = tracker.handlers["UserEvent"]
    handle({"Uniqueid": "u-1", "UserEvent": "CarteraAbandoned", "Detail": "TIMEOUT"})
    handle({"Uniqueid": "u-2", "UserEvent": "CarteraMachine", "Detail": "LONGGREETING-1500-1500"})
    tracker.on_agent_connect({"Uniqueid": "u-3", "Interface": "PJSIP/agent01"})
    handle({"Uniqueid": "u-3", "UserEvent": "CarteraAbandoned", "Detail": "TIMEOUT"})
    handle({"Uniqueid": "u-4", "UserEvent": "CarteraAnswered", "Attempt": "4"})
    for attempt in (1, 2, 3, 4):
        tracker.on_hangup({"Uniqueid": f"u-{attempt}", "Cause": "16", "Cause-txt": "Normal Clearing"})
    results = {call.request.attempt_id: call.result() for call in ended}
    assert {attempt: result.outcome for attempt, result in results.items()} == {
        1: CallOutcome.ABANDONED,
        2: CallOutcome.MACHINE,
        3: CallOutcome.ANSWERED,
        4: CallOutcome.ANSWERED,
    }
    assert results[1].raw_cause == "16 Normal Clearing, no agent in time: identification message played (TIMEOUT)"
    assert results[2].raw_cause == "16 Normal Clearing, answering machine (LONGGREETING-1500-1500)"
    for attempt in (1, 2):
        assert (results[attempt].answered_at, results[attempt].agent) == (None, None)
    assert results[3].agent == "PJSIP/agent01"


@pytest.mark.abuse
def test_a_pbx_repeating_user_events_does_not_grow_a_calls_notes_or_raw_cause() -> None:
    """A hostile or broken dialplan sends UserEvent after UserEvent for one live call, each with a Detail near
    max_message_bytes (and a huge Cause-txt at its Hangup): the call keeps one note per verdict, each cut short,
    a bounded count of notes, and a raw_cause of bounded size."""
    ended: list[Call] = []
    tracker = CallTracker(SystemClock(), on_end=ended.append, hang_up=lambda _: None, on_connect=lambda *_: None)
    tracker.admit(request(1), "u-1")
    tracker.admit(request(2), "u-2")
    detail = "D" * 1_000_000
    for _ in range(50):  # the same verdict again and again
        tracker.on_user_event({"Uniqueid": "u-1", "UserEvent": "CarteraMachine", "Detail": detail})
    for n in range(200):  # verdicts that keep changing
        verdict = ("CarteraMachine", "CarteraAbandoned")[n % 2]
        tracker.on_user_event({"Uniqueid": "u-2", "UserEvent": verdict, "Detail": f"{n}{detail}"})
    for attempt in (1, 2):
        live = {call.uniqueid: call for call in tracker.live()}[f"u-{attempt}"]
        assert len(live.notes) <= MAX_NOTES
        assert sum(map(len, live.notes)) <= MAX_NOTES_CHARS
        tracker.on_hangup({"Uniqueid": f"u-{attempt}", "Cause": "16", "Cause-txt": "C" * 1_000_000})
    results = {call.request.attempt_id: call.result() for call in ended}
    assert len(ended[0].notes) == 1, "a repeated verdict added notes"
    assert results[1].outcome is CallOutcome.MACHINE
    assert results[1].raw_cause.startswith("16 CCC")
    assert "answering machine (DDD" in results[1].raw_cause
    assert results[2].outcome is CallOutcome.ABANDONED  # the last verdict still settles the outcome
    assert results[2].raw_cause.endswith("more notes dropped")
    for result in results.values():
        assert len(result.raw_cause) <= MAX_RAW_CAUSE_CHARS, len(result.raw_cause)


@pytest.mark.abuse
def test_a_second_agent_connect_does_not_change_the_agent_already_reported() -> None:
    """A second AgentConnect naming another member (a hostile or confused PBX) after the call's connection was
    reported: the call's result keeps the agent the workspace was told of, and the connection is reported once."""
    ended: list[Call] = []
    connected: list[str | None] = []
    tracker = CallTracker(
        SystemClock(),
        on_end=ended.append,
        hang_up=lambda _: None,
        on_connect=lambda call, _: connected.append(call.agent),
    )
    tracker.admit(request(1), "u-1")
    tracker.on_agent_connect({"Uniqueid": "u-1", "Interface": "PJSIP/agent01"})
    tracker.on_agent_connect({"Uniqueid": "u-1", "Interface": "PJSIP/agent02"})
    tracker.on_hangup({"Uniqueid": "u-1", "Cause": "16", "Cause-txt": "Normal Clearing"})
    result = ended[0].result()
    assert connected == ["PJSIP/agent01"]
    assert (result.agent, result.outcome) == ("PJSIP/agent01", CallOutcome.ANSWERED)


def test_agent_pool_counts_logged_in_unpaused_reachable_members() -> None:
    def member(queue: str, location: str, status: str, paused: str) -> Message:
        return {
            "Event": "QueueMember",
            "Queue": queue,
            "Name": location,
            "Location": location,
            "Status": status,
            "Paused": paused,
        }

    pool = AgentPool("cobranza")
    pool.reset(
        [
            {"Event": "QueueParams", "Queue": "cobranza"},
            member("cobranza", "L/1", "1", "0"),
            member("cobranza", "L/2", "2", "0"),
            member("cobranza", "L/3", "5", "0"),
            member("cobranza", "L/4", "1", "1"),
            member("ventas", "L/9", "1", "0"),
        ]
    )
    assert (pool.available, pool.members) == (2, 4)
    pool.update({"Event": "QueueMemberPause", "Queue": "cobranza", "Interface": "L/4", "Paused": "0"})
    pool.update({"Event": "QueueMemberStatus", "Queue": "cobranza", "Interface": "L/3", "Status": "1", "Paused": "0"})
    assert pool.available == 4
    pool.remove({"Event": "QueueMemberRemoved", "Queue": "cobranza", "Interface": "L/1"})
    pool.update({"Event": "QueueMemberAdded", "Queue": "ventas", "Interface": "L/8", "Status": "1", "Paused": "0"})
    assert (pool.available, pool.members) == (3, 3)


def test_not_an_ami_port_is_a_clear_error() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        def greet() -> None:
            peer, _ = server.accept()
            with peer:
                peer.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
                time.sleep(0.5)

        threading.Thread(target=greet, daemon=True).start()
        connection = AmiConnection("127.0.0.1", port, handlers={}, on_lost=lambda _: None)
        with pytest.raises(AmiNotManager, match=r"is not Asterisk's manager interface \(it said 'SSH-2.0"):
            connection.connect()


def test_nothing_listening_is_a_clear_error(tmp_path: Path) -> None:
    config = AsteriskAmiConfig.model_validate({**SETTINGS, "port": free_port()})
    dialer = AsteriskAmiDialer(config, CapturingContext(tmp_path))
    with pytest.raises(AmiUnreachable, match=r"cannot reach Asterisk's AMI at 127\.0\.0\.1:"):
        dialer.start()


# --- a hostile PBX: a fake AMI server on loopback ----------------------------------------------------------


def _ami_message(**fields: str) -> bytes:
    return ("".join(f"{key}: {value}\r\n" for key, value in fields.items()) + "\r\n").encode()


class FakeAmi:
    """Just enough of AMI for the dialer to log in, list a queue of two agents and place calls, each answered and
    hung up (``cause``) ``hangup_after_s`` later; it writes no recording. ``channels``: the CoreShowChannel
    entries it lists."""

    ACTIONS = "Login Logoff Ping ListCommands Originate Hangup CoreShowChannels CoreSettings CoreStatus QueueStatus"
    PERMITTED = {name: f"{name} (Priv: all)" for name in ACTIONS.split()}

    def __init__(self, *, cause: str = "16", hangup_after_s: float = 0.2, channels: tuple[Message, ...] = ()) -> None:
        self.cause, self.hangup_after_s, self.channels = cause, hangup_after_s, channels
        self.list_events: tuple[Message, ...] = ()  # extra QueueStatus entries
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._server.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._clients: list[socket.socket] = []
        self._closed = threading.Event()
        self._spawn(self._accept)

    def close(self) -> None:
        self._closed.set()
        with suppress(OSError):
            self._server.shutdown(socket.SHUT_RDWR)  # wakes the accept() under way: close() alone does not
        self._server.close()
        for client in self._clients:
            with suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()
        for thread in self._threads:
            thread.join(5)

    def _spawn(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        self._threads.append(thread)
        thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            self._clients.append(client)
            self._spawn(self._serve, client)

    def _serve(self, client: socket.socket) -> None:
        lock = threading.Lock()

        def send(data: bytes) -> None:
            with lock, suppress(OSError):
                client.sendall(data)

        send(b"Asterisk Call Manager/9.0.0\r\n")
        buffer = b""
        while not self._closed.is_set():
            try:
                data = client.recv(65536)
            except OSError:
                return
            if not data:
                return
            buffer += data
            while b"\r\n\r\n" in buffer:
                block, buffer = buffer.split(b"\r\n\r\n", 1)
                self._answer(parse_fields(block.decode()), send)

    def _answer(self, action: Message, send: Callable[[bytes], None]) -> None:
        name, action_id = action.get("Action", ""), action.get("ActionID", "")
        if name == "ListCommands":
            send(_ami_message(Response="Success", ActionID=action_id, **self.PERMITTED))
        elif name == "CoreSettings":
            send(_ami_message(Response="Success", ActionID=action_id, AsteriskVersion="22.0.0"))
        elif name == "CoreStatus":
            send(_ami_message(Response="Success", ActionID=action_id, CoreStartupDate="2026", CoreStartupTime="0"))
        elif name == "QueueStatus":
            send(_ami_message(Response="Success", ActionID=action_id, EventList="start"))
            send(_ami_message(Event="QueueParams", Queue="cobranza", ActionID=action_id))
            for agent in ("PJSIP/agent01", "PJSIP/agent02"):
                member = {"Location": agent, "StateInterface": agent, "Status": "1", "Paused": "0"}
                send(_ami_message(Event="QueueMember", Queue="cobranza", ActionID=action_id, Name=agent, **member))
            for entry in self.list_events:
                send(_ami_message(**{**entry, "ActionID": action_id}))
            send(_ami_message(Event="QueueStatusComplete", ActionID=action_id, EventList="Complete"))
        elif name == "CoreShowChannels":
            send(_ami_message(Response="Success", ActionID=action_id, EventList="start"))
            for channel in self.channels:
                send(_ami_message(Event="CoreShowChannel", ActionID=action_id, **channel))
            send(_ami_message(Event="CoreShowChannelsComplete", ActionID=action_id, EventList="Complete"))
        elif name == "Originate":
            send(_ami_message(Response="Success", ActionID=action_id, Message="Originate successfully queued"))
            self._spawn(self._call, action_id, send)
        elif name == "Logoff":
            send(_ami_message(Response="Goodbye", ActionID=action_id))
        else:
            send(_ami_message(Response="Success", ActionID=action_id))

    def _call(self, uniqueid: str, send: Callable[[bytes], None]) -> None:
        channel = f"PJSIP/carrier-{uniqueid[-6:]}"
        send(_ami_message(Event="Newchannel", Channel=channel, ChannelState="0", Uniqueid=uniqueid))
        send(_ami_message(Event="OriginateResponse", ActionID=uniqueid, Response="Success", Uniqueid=uniqueid))
        send(_ami_message(Event="Newstate", Channel=channel, ChannelState="6", Uniqueid=uniqueid))
        if not self._closed.wait(self.hangup_after_s):
            hangup = {"Cause": self.cause, "Cause-txt": "Normal Clearing"}
            send(_ami_message(Event="Hangup", Channel=channel, Uniqueid=uniqueid, **hangup))


@pytest.fixture
def fake_ami() -> Iterator[FakeAmi]:
    server = FakeAmi()
    yield server
    server.close()


def fake_dialer(fake: FakeAmi, tmp_path: Path, **settings: Any) -> tuple[AsteriskAmiDialer, CapturingContext]:
    context = CapturingContext(tmp_path)
    config = AsteriskAmiConfig.model_validate({**SETTINGS, "port": fake.port, "spool_dir": tmp_path, **settings})
    return AsteriskAmiDialer(config, context), context


@pytest.mark.abuse
def test_stopping_cuts_short_the_waits_for_recordings_a_pbx_never_writes(
    fake_ami: FakeAmi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A PBX that writes no recording (MixMonitor off, a wrong mount): each answered call's report waits up to
    recording_wait_s for it, 4 at a time. Stopping cuts those waits short: every call is reported, its recording
    logged missing, and stop returns within about stop_timeout_s, not after the whole backlog of waits."""
    dialer, context = fake_dialer(fake_ami, tmp_path, recording_wait_s=30, stop_timeout_s=2)
    dialer.start()
    try:
        for attempt in range(1, 11):
            dialer.place_call(request(attempt))
        deadline = time.monotonic() + 10
        while dialer._switch._calls.in_flight and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not dialer._switch._calls.in_flight, "the fake PBX did not hang the calls up"
    finally:
        began = time.monotonic()
        dialer.stop()
        took = time.monotonic() - began
    assert took < 4, f"stop took {took:.1f} s against stop_timeout_s = 2"
    assert sorted(result.attempt_id for result in context.calls) == list(range(1, 11))
    assert {result.outcome for result in context.calls} == {CallOutcome.ANSWERED}
    assert not context.recordings
    missing = [r for r in caplog.records if "no recording at" in r.getMessage()]
    assert len(missing) == 10


@pytest.mark.abuse
@pytest.mark.parametrize(
    "cause", ["\u00b2", "9" * 5000, "", "-1", "16 "], ids=["superscript", "5000-digits", "empty", "negative", "space"]
)
def test_a_hangup_with_a_cause_that_is_no_number_still_ends_its_call(cause: str) -> None:
    """A hostile PBX's Hangup ``Cause``: ``²`` (``str.isdigit`` takes it, ``int`` refuses it) or more digits than
    ``int`` converts never raises out of the handler (the event was dropped, the call marked seen, so never timed
    out: dialing stalled): the call ends, its cause unknown."""
    ended: list[Call] = []
    tracker = CallTracker(SystemClock(), on_end=ended.append, hang_up=lambda _: None, on_connect=lambda *_: None)
    call = tracker.admit(request(1), "u-1")
    assert call is not None
    tracker.on_hangup({"Uniqueid": "u-1", "Cause": cause, "Cause-txt": "Normal Clearing"})
    assert ended == [call]
    assert (call.seen, call.cause, tracker.in_flight) == (True, None, 0)
    assert call.result().raw_cause == "Asterisk reported no cause"


def test_ami_numbers_are_bounded_ascii_digits() -> None:
    assert [ami_int(value) for value in ("16", "0", "9" * 20)] == [16, 0, int("9" * 20)]
    assert [ami_int(value) for value in ("", "9" * 21, "9" * 5000, "\u00b2", "\u0661", "+1", "-1", " 1")] == [None] * 8


@pytest.mark.abuse
def test_a_channel_with_a_garbage_attempt_is_not_taken_for_a_killed_runs_call(tmp_path: Path) -> None:
    """CoreShowChannels naming a UNIQUEID of our prefix whose attempt has 5,000 digits (past ``int``'s limit): the
    reconciliation aborted with ValueError, leaving the calls placing; the channel is now not ours, and the killed
    run's calls whose channel is gone end UNKNOWN."""
    garbage = ({"Channel": "PJSIP/x-1", "Uniqueid": f"cartera-test-{'9' * 5000}-ab"},)
    fake = FakeAmi(channels=garbage)
    try:
        dialer, context = fake_dialer(fake, tmp_path)
        dialer.start()
        try:
            requested = datetime(2026, 1, 1, tzinfo=UTC)
            dialer.reconcile([UnfinishedCall(request(attempt), requested) for attempt in (1, 2)])
        finally:
            dialer.stop()
    finally:
        fake.close()
    assert [(result.attempt_id, result.outcome) for result in context.calls] == [
        (1, CallOutcome.UNKNOWN),
        (2, CallOutcome.UNKNOWN),
    ]


@pytest.mark.abuse
def test_a_list_action_flooded_by_the_pbx_is_given_up_past_its_byte_bound(fake_ami: FakeAmi) -> None:
    """Every event of an open list action (QueueStatus, CoreShowChannels) was kept: a PBX sending 300,000 ~1 KB
    QueueEntry events inside one list grew the node to 589 MB. Past max_list_bytes the list keeps nothing more
    and fails; a list under the bound is read whole."""
    fake_ami.list_events = tuple({"Event": "QueueEntry", "Queue": "cobranza", "X": "y" * 1000} for _ in range(200))
    connection = AmiConnection("127.0.0.1", fake_ami.port, handlers={}, on_lost=lambda _: None, max_list_bytes=1 << 16)
    connection.connect()
    try:
        connection.login("cartera", "s3cret-value")
        with pytest.raises(AmiError, match=r"QueueStatus: the list from 127\.0\.0\.1:\d+ passed 65536 bytes"):
            connection.list_action("QueueStatus", "QueueStatusComplete", Queue="cobranza")
        fake_ami.list_events = fake_ami.list_events[:20]
        listed = connection.list_action("QueueStatus", "QueueStatusComplete", Queue="cobranza")
        assert [event["Event"] for event in listed] == [
            "QueueParams",
            "QueueMember",
            "QueueMember",
            *["QueueEntry"] * 20,
        ]
    finally:
        connection.close()


@pytest.mark.abuse
def test_a_pbx_slow_to_write_recordings_does_not_hold_back_the_calls_ends(fake_ami: FakeAmi, tmp_path: Path) -> None:
    """Each answered call's end was reported only after its recording (or recording_wait_s without it), 4 at a
    time: a PBX writing none held every end back 10 s and capped them at 4 per 10 s. The ends are now reported at
    once, each recording when its file is finished, with the call's attempt and answer time."""
    dialer, context = fake_dialer(fake_ami, tmp_path, recording_wait_s=60, stop_timeout_s=1)
    dialer.start()
    try:
        for attempt in range(1, 11):
            dialer.place_call(request(attempt))
        results = {result.attempt_id: result for result in context.wait_for_calls(10, 5)}
        assert not context.recordings
        for result in results.values():  # every file late; whichever call's wait comes first, each is reported
            with wave.open(str(tmp_path / f"{result.vendor_call_id}.wav"), "wb") as wav:
                wav.setnchannels(1)
                wav.setsampwidth(2)
                wav.setframerate(8000)
                wav.writeframes(b"\0\0" * 8000)
        recordings = context.wait_for_recordings(10, 30)
    finally:
        dialer.stop()
    assert sorted(recording.attempt_id or 0 for recording in recordings) == list(range(1, 11))
    for recording in recordings:
        result = results[recording.attempt_id or 0]
        assert recording.path == tmp_path / f"{result.vendor_call_id}.wav"
        assert (recording.duration_s, recording.started_at) == (1.0, result.answered_at)


# --- against Asterisk 22 ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def peer() -> Iterator[AsteriskPeer]:
    with running_asterisk(agents=AGENTS, talk_seconds=1) as running:
        yield running


@pytest.fixture
def talk(peer: AsteriskPeer) -> Iterator[Callable[[float], None]]:
    """Sets how long agents talk for this test; back to 1 second afterwards."""
    yield peer.set_talk_seconds
    peer.set_talk_seconds(1)


def build(peer: AsteriskPeer, context: CapturingContext, **settings: Any) -> AsteriskAmiDialer:
    return AsteriskAmiDialer(AsteriskAmiConfig.model_validate(peer.dialer_settings(**settings)), context)


@pytest.fixture
def started(peer: AsteriskPeer, tmp_path: Path) -> Iterator[Callable[..., tuple[AsteriskAmiDialer, CapturingContext]]]:
    """Starts dialers on the module's Asterisk with the given settings; stops them after the test."""
    dialers: list[AsteriskAmiDialer] = []

    def make(**settings: Any) -> tuple[AsteriskAmiDialer, CapturingContext]:
        context = CapturingContext(tmp_path / f"dialer{len(dialers)}")
        dialer = build(peer, context, **settings)
        dialer.start()
        dialers.append(dialer)
        return dialer, context

    yield make
    for dialer in dialers:
        dialer.stop()


def request(attempt_id: int, phone: str = ANSWERS, **kwargs: Any) -> CallRequest:
    return CallRequest(attempt_id=attempt_id, site="test", phone=phone, **kwargs)


def rms(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        samples = array("h", wav.readframes(wav.getnframes()))
    return math.sqrt(sum(sample * sample for sample in samples) / len(samples)) if samples else 0.0


@pytest.mark.asterisk
class TestAsteriskConformance(DialerConformance):
    timeout = 30.0

    @pytest.fixture
    def context(self, tmp_path: Path) -> CapturingContext:
        return CapturingContext(tmp_path / "dialer")

    @pytest.fixture
    def numbers(self) -> dict[CallOutcome, str]:
        return dict(NUMBERS)

    @pytest.fixture
    def dialer(self, peer: AsteriskPeer, context: CapturingContext) -> Iterator[AsteriskAmiDialer]:
        dialer = build(peer, context)
        dialer.start()
        yield dialer
        dialer.stop()

    @pytest.fixture
    def agents(self, peer: AsteriskPeer) -> Iterator[list[str]]:
        yield peer.agent_interfaces
        for interface in peer.agent_interfaces:  # a failed pause test leaves no agent paused for the next tests
            peer.action("QueuePause", Queue="cobranza", Interface=interface, Paused="false")


@pytest.mark.asterisk
def test_check_logs_in_and_reports_the_version(started: Callable[..., Any]) -> None:
    dialer, _ = started(dial_ratio=1.5)
    result = dialer.check()
    assert result.ok, result.detail
    assert result.detail.startswith("Asterisk 22.")
    assert "(AMI 11." in result.detail
    assert f"queue 'cobranza': {AGENTS} of {AGENTS} agents available, dial ratio 1.5" in result.detail
    assert dialer.capacity() == AGENTS * 3 // 2


@pytest.mark.asterisk
def test_bad_password_is_refused_clearly(peer: AsteriskPeer, tmp_path: Path) -> None:
    dialer = build(peer, CapturingContext(tmp_path), secret="not-the-secret")
    with pytest.raises(AmiLoginFailed) as caught:
        dialer.start()
    message = str(caught.value)
    assert f"Asterisk at 127.0.0.1:{peer.ami_port} refused AMI user 'cartera': Authentication failed" in message
    assert "not-the-secret" not in message


@pytest.mark.asterisk
def test_missing_permissions_are_named(peer: AsteriskPeer, tmp_path: Path) -> None:
    dialer = build(peer, CapturingContext(tmp_path), username=READONLY_USER, secret=peer.readonly_secret)
    with pytest.raises(AmiPermissionDenied) as caught:
        dialer.start()
    assert str(caught.value) == (
        f"AMI user '{READONLY_USER}' at 127.0.0.1:{peer.ami_port} may not run Hangup, Originate: add call,originate "
        "to its write = ... in manager.conf (and read = call,agent)"
    )


@pytest.mark.asterisk
def test_unknown_queue_is_named(peer: AsteriskPeer, tmp_path: Path) -> None:
    dialer = build(peer, CapturingContext(tmp_path), queue="ventas")
    with pytest.raises(AmiError, match=r"has no queue 'ventas' \(queues.conf\)"):
        dialer.start()


@pytest.mark.asterisk
def test_a_pbx_without_app_queue_is_named(tmp_path: Path) -> None:
    with running_asterisk(agents=1, without=("app_queue",)) as peer:
        dialer = build(peer, CapturingContext(tmp_path))
        with pytest.raises(AmiError) as caught:
            dialer.start()
    assert str(caught.value) == (
        f"Asterisk at 127.0.0.1:{peer.ami_port} has no QueueStatus action: app_queue is not loaded "
        "(load it in modules.conf)"
    )


@pytest.mark.asterisk
def test_an_originate_that_makes_no_channel_ends_at_once_as_failed(started: Callable[..., Any]) -> None:
    dialer, context = started(channel="PJSIP/{number}@no-such-endpoint", ring_timeout_s=30)
    began = time.monotonic()
    dialer.place_call(request(4050))
    (result,) = context.wait_for_calls(1, 10)
    assert time.monotonic() - began < 5, "the call waited for its ring timeout"
    assert (result.outcome, result.raw_cause) == (CallOutcome.FAILED, "originate Failure, reason 0 (not placed)")
    assert result.vendor_call_id is not None
    assert result.vendor_call_id.startswith("cartera-test-4050-")


@pytest.mark.asterisk
def test_an_answered_call_carries_its_ids_and_is_recorded(
    peer: AsteriskPeer, started: Callable[..., Any], talk: Callable[[float], None]
) -> None:
    talk(3)
    dialer, context = started()
    answered: list[dict[str, str]] = []
    with peer.ami() as watcher:
        watcher.add_event_listener(lambda event, **_: answered.append(dict(event.keys)), white_list=["UserEvent"])
        dialer.place_call(request(4101, account_ref="BCO-000107", variables={"balance": "1.0"}))
        (result,) = context.wait_for_calls(1, 30)
    assert (result.outcome, result.raw_cause) == (CallOutcome.ANSWERED, "16 Normal Clearing, dial ANSWER")
    assert result.vendor_call_id is not None
    assert result.vendor_call_id.startswith("cartera-test-4101-")
    assert result.agent in peer.agent_interfaces  # the queue member's interface
    assert result.answered_at is not None
    assert result.ended_at is not None
    assert 2.5 < result.talk_seconds < 6
    (event,) = [e for e in answered if e.get("Uniqueid") == result.vendor_call_id]
    assert (event["Attempt"], event["Account"]) == ("4101", "BCO-000107")
    assert peer.invites()["4101"], "the INVITE did not carry X-Cartera-Attempt"
    (recording,) = context.wait_for_recordings(1, 15)  # reported after the call
    assert recording.path == peer.spool / f"{result.vendor_call_id}.wav"
    assert (recording.attempt_id, recording.agent) == (4101, result.agent)
    assert recording.vendor_call_id == result.vendor_call_id
    assert recording.started_at == result.answered_at
    assert 2.5 < recording.duration_s <= result.talk_seconds + 0.5
    with wave.open(str(recording.path), "rb") as wav:
        assert (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) == (8000, 2, 1)
    assert rms(recording.path) > 300, "the recording is silent: the agent's tones are missing"


@pytest.mark.asterisk
def test_the_debtor_hanging_up_is_an_answered_call(started: Callable[..., Any], talk: Callable[[float], None]) -> None:
    talk(20)
    dialer, context = started()
    dialer.place_call(request(4201, DEBTOR_HANGS_UP))
    (result,) = context.wait_for_calls(1, 30)
    assert (result.outcome, result.raw_cause) == (CallOutcome.ANSWERED, "16 Normal Clearing, dial ANSWER")
    assert 2 < result.talk_seconds < 6
    assert len(context.wait_for_recordings(1, 15)) == 1


@pytest.mark.asterisk
@pytest.mark.parametrize(
    ("outcome", "cause"),
    [
        (CallOutcome.BUSY, "17 User busy, dial BUSY"),
        (CallOutcome.NO_ANSWER, "19 User alerting, no answer"),
        (CallOutcome.CONGESTION, "34 Circuit/channel congestion, dial CONGESTION"),
        (CallOutcome.INVALID_NUMBER, "1 Unallocated (unassigned) number, dial NOANSWER"),
        (CallOutcome.REJECTED, "21 Call Rejected, dial NOANSWER"),
        (CallOutcome.FAILED, "38 Network out of order, dial NOANSWER"),
    ],
)
def test_unanswered_outcomes_keep_the_raw_cause(started: Callable[..., Any], outcome: CallOutcome, cause: str) -> None:
    dialer, context = started()
    dialer.place_call(request(4300, NUMBERS[outcome]))
    (result,) = context.wait_for_calls(1, 30)
    assert (result.outcome, result.raw_cause, result.answered_at, result.agent) == (outcome, cause, None, None)
    assert not context.recordings


@pytest.mark.asterisk
def test_a_call_no_agent_takes_in_time_hears_its_identification_message_and_ends_abandoned(
    peer: AsteriskPeer, started: Callable[..., Any]
) -> None:
    """Every agent paused: an answered call waits abandon_after_s in the queue, hears the identification message
    (the site's, or its portfolio's: a 1 kHz and a 2 kHz tone, found in the calls' recordings), is hung up and ends
    abandoned, unanswered, with no agent."""
    write_tone(peer.home / "sounds" / "tarjetas.wav", 2000, 1.5)
    for interface in peer.agent_interfaces:
        peer.action("QueuePause", Queue="cobranza", Interface=interface, Paused="true")
    try:
        dialer, context = started(portfolio_messages={"BANCO/TARJETAS": f"{peer.inner}/sounds/tarjetas"})
        dialer.place_call(request(7301))
        dialer.place_call(request(7302, variables={"CARTERA_PORTFOLIO": "BANCO/TARJETAS"}))
        results = {result.attempt_id: result for result in context.wait_for_calls(2, 30)}
        recordings = {recording.attempt_id: recording for recording in context.wait_for_recordings(2, 30)}
    finally:
        for interface in peer.agent_interfaces:
            peer.action("QueuePause", Queue="cobranza", Interface=interface, Paused="false")
    for result in results.values():
        assert (result.outcome, result.answered_at, result.agent) == (CallOutcome.ABANDONED, None, None)
        assert "no agent in time: identification message played (TIMEOUT)" in result.raw_cause
    assert not context.agent_connections
    site, portfolio = recordings[7301].path, recordings[7302].path
    assert tone_share(site, IDENTIFICATION_HZ) > 0.2, "the site's message is not in the abandoned call"
    assert tone_share(site, 2000) < 0.01
    assert tone_share(portfolio, 2000) > 0.2, "the portfolio's message is not in its abandoned call"
    assert tone_share(portfolio, IDENTIFICATION_HZ) < 0.01


@pytest.mark.asterisk
def test_with_amd_a_machine_is_hung_up_as_machine_and_a_person_goes_to_an_agent(
    peer: AsteriskPeer, started: Callable[..., Any]
) -> None:
    """``amd = true``: AMD() hears each debtor's greeting (the peer plays it during AMD() and SIPp echoes it back):
    four seconds without a pause is a machine, hung up and ended ``machine``, unanswered, no agent; "hello" and
    silence is a person, connected to an agent. Without ``amd`` the machine's call goes to an agent too."""
    dialer, context = started(amd=True)
    plain, plain_context = started()
    machine, person = ({"CARTERA_GREETING": peer.sound(name)} for name in (MACHINE_GREETING, PERSON_GREETING))
    dialer.place_call(request(7311, variables=machine))
    dialer.place_call(request(7312, variables=person))
    plain.place_call(request(7313, variables=machine))
    results = {result.attempt_id: result for result in context.wait_for_calls(2, 30)}
    (unchecked,) = plain_context.wait_for_calls(1, 30)
    detected = results[7311]
    assert (detected.outcome, detected.answered_at, detected.agent) == (CallOutcome.MACHINE, None, None)
    assert "answering machine (LONGGREETING" in detected.raw_cause, detected.raw_cause
    assert [event.attempt_id for event in context.agent_connections] == [7312]
    assert results[7312].outcome is CallOutcome.ANSWERED, results[7312].raw_cause
    assert unchecked.outcome is CallOutcome.ANSWERED, unchecked.raw_cause


def test_a_cancelled_call_stays_cancelled_even_if_the_answer_crosses_the_hangup() -> None:
    ended: list[Call] = []
    hung_up: list[Call] = []
    tracker = CallTracker(SystemClock(), on_end=ended.append, hang_up=hung_up.append, on_connect=lambda *_: None)
    ringing = tracker.admit(request(1, NUMBERS[CallOutcome.NO_ANSWER]), "u-1")
    answered = tracker.admit(request(2), "u-2")
    assert ringing is not None
    assert answered is not None
    tracker.on_new_state({"Uniqueid": "u-2", "ChannelState": "6"})
    assert tracker.cancel(2) is None, "an answered call was cancelled"
    assert tracker.cancel(3) is None
    assert tracker.cancel(1) is ringing
    assert tracker.cancel(1) is ringing
    tracker.on_new_channel({"Uniqueid": "u-1", "Channel": "PJSIP/carrier-1"})
    assert hung_up == [ringing], "the channel reported after the cancel was not hung up"
    tracker.on_new_state({"Uniqueid": "u-1", "ChannelState": "6"})
    tracker.on_hangup({"Uniqueid": "u-1", "Cause": "16", "Cause-txt": "Normal Clearing"})
    result = ended[0].result()
    assert (result.outcome, result.answered_at) == (CallOutcome.CANCELLED, None)
    assert result.raw_cause == (
        "16 Normal Clearing, cancelled by the dialer before the answer; the debtor answered as it was hung up"
    )


def test_a_call_placed_for_an_agent_is_connected_when_its_dial_of_that_agent_answers() -> None:
    """The dialplan's agent_context dials CARTERA_AGENT: our channel's DialEnd (as the caller) with ANSWER connects
    the call to the agent it was placed for, once; a queue's dials are left to AgentConnect."""
    connected: list[tuple[str | None, int]] = []
    tracker = CallTracker(
        SystemClock(),
        on_end=lambda _: None,
        hang_up=lambda _: None,
        on_connect=lambda call, _: connected.append((call.agent, call.request.attempt_id)),
    )
    targeted = tracker.admit(request(1, agent="PJSIP/agent02"), "u-1")
    queued = tracker.admit(request(2), "u-2")
    unanswered = tracker.admit(request(3, agent="PJSIP/agent01"), "u-3")
    assert targeted is not None
    assert queued is not None
    assert unanswered is not None
    answer = {"DestChannel": "PJSIP/agent02-00000004", "DialStatus": "ANSWER"}
    tracker.on_dial_end({"Uniqueid": "u-1", **answer})
    tracker.on_dial_end({"Uniqueid": "u-1", **answer})
    tracker.on_dial_end({"Uniqueid": "u-2", **answer})
    tracker.on_dial_end({"Uniqueid": "u-3", "DestChannel": "PJSIP/agent01-00000005", "DialStatus": "NOANSWER"})
    assert connected == [("PJSIP/agent02", 1)]
    assert (queued.agent, unanswered.agent) == (None, None)
    assert targeted.dial_status is None, "the agent's dial is not the debtor's"


@pytest.mark.asterisk
def test_cancel_hangs_up_a_ringing_call_and_spares_a_talking_one(
    peer: AsteriskPeer, started: Callable[..., Any], talk: Callable[[float], None]
) -> None:
    talk(4)
    dialer, context = started()
    dialer.place_call(request(4401))  # answered after 0.7 s of ringing, then talks 4 s
    time.sleep(1.0)
    dialer.place_call(request(4402, NUMBERS[CallOutcome.NO_ANSWER]))  # rings until the 15 s ring timeout
    time.sleep(0.5)
    assert dialer.cancel(4402) is True
    time.sleep(0.5)
    assert dialer.cancel(4401) is False
    cancelled, answered = context.wait_for_calls(2, 30)
    assert (cancelled.attempt_id, cancelled.outcome, cancelled.answered_at) == (4402, CallOutcome.CANCELLED, None)
    assert cancelled.raw_cause == "16 Normal Clearing, dial NOANSWER, cancelled by the dialer before the answer"
    assert cancelled.ended_at is not None
    assert (cancelled.ended_at - cancelled.started_at).total_seconds() < 2.5
    assert (answered.attempt_id, answered.outcome) == (4401, CallOutcome.ANSWERED)
    assert answered.talk_seconds > 3
    (call_id,) = peer.invites()["4402"]
    messages = re.split(r"(?m)^-{20,} .*$", peer.sipp_messages.read_text(encoding="utf-8", errors="replace"))
    this_call = re.compile(rf"(?mi)^Call-ID: *{re.escape(call_id)}\r?$")
    received = [message for message in messages if "message received" in message and this_call.search(message)]
    assert any("\nCANCEL sip:" in message for message in received), "the debtor's phone got no CANCEL"


@pytest.mark.asterisk
def test_twenty_four_concurrent_calls_on_one_connection(
    peer: AsteriskPeer, started: Callable[..., Any], talk: Callable[[float], None]
) -> None:
    talk(1)
    dialer, context = started(dial_ratio=2.0, abandon_after_s=30)  # half the calls wait for an agent
    assert dialer.capacity() == 2 * AGENTS
    requests = [request(5000 + n) for n in range(2 * AGENTS)]
    began = datetime.now(UTC)
    for each in requests:
        dialer.place_call(each)
    assert dialer.capacity() == 0
    results = context.wait_for_calls(len(requests), 60)
    assert sorted(r.attempt_id for r in results) == [r.attempt_id for r in requests]
    assert {r.outcome for r in results} == {CallOutcome.ANSWERED}, [r.raw_cause for r in results]
    assert len({r.vendor_call_id for r in results}) == len(requests)
    context.wait_for_recordings(len(requests), 30)
    assert peer.most_calls_at_once(since=began) == len(requests), "the calls were not all up at once"
    invites = peer.invites()
    assert all(len(invites[str(r.attempt_id)]) == 1 for r in requests)


@pytest.mark.asterisk
def test_calls_in_flight_never_exceed_available_agents_times_ratio(
    peer: AsteriskPeer, started: Callable[..., Any], talk: Callable[[float], None]
) -> None:
    talk(1)
    paused = [f"Local/{n:02d}@agent-phones/n" for n in range(4, AGENTS + 1)]
    for interface in paused:
        peer.action("QueuePause", Queue="cobranza", Interface=interface, Paused="true")
    try:
        dialer, context = started(dial_ratio=1.5, abandon_after_s=30)  # a call in four waits for an agent
        deadline = time.monotonic() + 5
        while dialer.capacity() != 4:  # 3 agents x 1.5
            assert time.monotonic() < deadline, f"capacity {dialer.capacity()}, expected 4"
            time.sleep(0.05)
        began = datetime.now(UTC)
        for n in range(12):
            deadline = time.monotonic() + 30
            while dialer.capacity() <= 0:
                assert time.monotonic() < deadline, "capacity never came back"
                time.sleep(0.01)
            dialer.place_call(request(6000 + n))
        context.wait_for_calls(12, 60)
        peak = peer.most_calls_at_once(since=began)
        assert peak == 4, f"the debtors' phones had {peak} calls at once with 3 agents and dial ratio 1.5"
        peer.action("QueuePause", Queue="cobranza", Interface=paused[0], Paused="false")
        deadline = time.monotonic() + 5
        while dialer.capacity() != 6:  # 4 agents x 1.5, from the QueueMemberPause event
            assert time.monotonic() < deadline, f"capacity {dialer.capacity()} after unpausing, expected 6"
            time.sleep(0.05)
    finally:
        for interface in paused:
            peer.action("QueuePause", Queue="cobranza", Interface=interface, Paused="false")


@pytest.mark.asterisk
def test_asterisk_sends_only_the_events_the_dialer_reads(
    started: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    received: list[str] = []
    dispatch = AmiConnection._dispatch

    def recording_dispatch(self: AmiConnection, block: str) -> None:
        received.extend(re.findall(r"^Event: (\S+)", block))
        dispatch(self, block)

    monkeypatch.setattr(AmiConnection, "_dispatch", recording_dispatch)
    dialer, context = started()
    assert "events filtered here only" not in dialer.check().detail
    dialer.place_call(request(4501))
    context.wait_for_calls(1, 30)
    lists = {"QueueParams", "QueueMember", "QueueStatusComplete", "CoreShowChannel", "CoreShowChannelsComplete"}
    unexpected = set(received) - {*CALL_EVENTS, *MEMBER_EVENTS, MEMBER_REMOVED, "Shutdown", "FullyBooted"} - lists
    assert not unexpected, f"the server-side filter let through {sorted(unexpected)}"
    assert {"Newchannel", "OriginateResponse", "AgentConnect", "Hangup"} <= set(received)


@pytest.mark.asterisk
def test_the_same_attempt_is_never_originated_twice(peer: AsteriskPeer, started: Callable[..., Any]) -> None:
    dialer, context = started()
    dialer.place_call(request(7001))
    dialer.place_call(request(7001))
    results = context.wait_for_calls(1, 30)
    time.sleep(0.5)
    assert [r.attempt_id for r in context.calls] == [7001]
    assert results[0].outcome is CallOutcome.ANSWERED
    assert len(peer.invites()["7001"]) == 1


# --- connection loss, half-open connection, Asterisk restarted -------------------------------------------------


@pytest.fixture
def own_peer() -> Iterator[AsteriskPeer]:
    """An Asterisk for one test that freezes, kills or restarts it."""
    with running_asterisk(agents=4, talk_seconds=2) as running:
        yield running


@pytest.mark.asterisk
def test_half_open_connection_is_detected_and_live_calls_resynchronised(
    own_peer: AsteriskPeer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    own_peer.set_talk_seconds(8)
    context = CapturingContext(tmp_path)
    dialer = build(own_peer, context, ping_interval_s=0.5, ping_timeout_s=0.5, connect_timeout_s=1, reconnect_max_s=1)
    dialer.start()
    try:
        dialer.place_call(request(8001))
        deadline = time.monotonic() + 10
        while own_peer.debtor_channels() == 0:
            assert time.monotonic() < deadline, "the call never started"
            time.sleep(0.1)
        time.sleep(1.5)  # answered and talking
        with caplog.at_level("WARNING", logger="cartera.plugin.asterisk_ami"):
            own_peer.freeze()
            try:
                deadline = time.monotonic() + 5
                while dialer.capacity() != 0:
                    assert time.monotonic() < deadline, "a silent connection was not detected"
                    time.sleep(0.05)
                assert not dialer.check().ok
            finally:
                own_peer.thaw()
            deadline = time.monotonic() + 10
            while dialer.capacity() == 0 and not context.calls:
                assert time.monotonic() < deadline, "no reconnection after Asterisk came back"
                time.sleep(0.05)
        reasons = [
            getattr(r, "fields", {}).get("reason", "") for r in caplog.records if r.msg == "asterisk.disconnected"
        ]
        assert any("half-open" in reason for reason in reasons), reasons
        (result,) = context.wait_for_calls(1, 30)
    finally:
        dialer.stop()
    assert result.outcome is CallOutcome.ANSWERED, result.raw_cause
    assert result.raw_cause.startswith("16 Normal Clearing"), "the call was not followed to its real hangup"
    assert len(context.recordings) == 1
    assert len(own_peer.invites()["8001"]) == 1, "the Originate was sent again"


@pytest.mark.asterisk
def test_asterisk_crash_ends_live_calls_once_and_reconnects(own_peer: AsteriskPeer, tmp_path: Path) -> None:
    own_peer.set_talk_seconds(30)
    context = CapturingContext(tmp_path)
    dialer = build(own_peer, context, reconnect_max_s=1)
    dialer.start()
    try:
        for n in range(3):
            dialer.place_call(request(9000 + n))
        deadline = time.monotonic() + 10
        while own_peer.debtor_channels() < 3:
            assert time.monotonic() < deadline, "the calls never started"
            time.sleep(0.1)
        time.sleep(1.5)
        own_peer.restart_asterisk(crash=True)
        results = context.wait_for_calls(3, 30)
        assert all(r.raw_cause.endswith("Asterisk restarted during the call") for r in results), results
        deadline = time.monotonic() + 10
        while dialer.capacity() == 0:
            assert time.monotonic() < deadline, "no reconnection after the restart"
            time.sleep(0.05)
        dialer.place_call(request(9100))
        context.wait_until(lambda: any(r.attempt_id == 9100 for r in context.calls), 30, "a call after the restart")
    finally:
        dialer.stop()
    assert sorted(r.attempt_id for r in context.calls) == [9000, 9001, 9002, 9100]
    invites = own_peer.invites()
    assert all(len(invites[str(n)]) == 1 for n in (9000, 9001, 9002, 9100))


# --- through the node -------------------------------------------------------------------------------------------

#: The law pack (Colombia's) allows calls to accounts on weekdays in office hours only: tests that call
#: accounts run a simulated clock at real speed from a Monday morning; the others use the system clock and
#: the debtors' numbers as test numbers (the gate's audited bypass for IT checks).
SIMULATED_MONDAY = 'mode = "simulated"\nstart = 2026-11-23T10:00:00-05:00\nspeed = 1'
SYSTEM_CLOCK = 'mode = "system"'

SITE = """
[sites.t]
timezone = "America/Bogota"
country = "CO"
data_dir = "var/t"

[sites.t.clock]
{clock}

[sites.t.compliance]
authorised_channels = ["call"]
test_numbers = {test_numbers}

[sites.t.campaign]
enabled = {campaign}
tick_seconds = 0.3
retry_after_minutes = 600
promise_sms = false

[sites.t.archival]
every_seconds = 1
local_retention_hours = 1

[sites.t.dialer]
plugin = "asterisk_ami"
host = "127.0.0.1"
port = {port}
username = "cartera"
secret = "${{CARTERA_TEST_AMI_SECRET}}"
queue = "cobranza"
dial_ratio = 2.0
ring_timeout_s = 15
abandon_after_s = 30
spool_dir = "{spool}"
reconnect_max_s = 1

[sites.t.recording]
plugin = "localdir"
path = "archive"

[sites.t.crm_sync]
plugin = "csv"
inbox = "inbox"
outbox = "exports"
creditor = "BANCO"
portfolio = "TARJETAS"
settle_seconds = 0  # the test drops its file and syncs at once
"""


def test_a_ring_timeout_under_15_s_is_refused_naming_file_line_and_key(tmp_path: Path) -> None:
    """47 CFR 64.1200(a)(6): a call rings 15 s at least; ``check`` exits 2 naming the file, line and key."""
    text = SITE.format(clock=SYSTEM_CLOCK, test_numbers="[]", campaign="false", port=free_port(), spool=tmp_path)
    text = text.replace("ring_timeout_s = 15", "ring_timeout_s = 10")
    site = tmp_path / "sites.toml"
    site.write_text(text, encoding="utf-8")
    result = run_site_process(site, "check", env={"CARTERA_TEST_AMI_SECRET": "s3cret-value"})
    assert result.returncode == 2, result.stdout + result.stderr
    line = text[: text.index("ring_timeout_s = 10")].count("\n") + 1
    assert f"{site}:{line}: site 't', key 'dialer.ring_timeout_s'" in result.stderr
    assert "10 s: a call rings at least 15 s before it is given up as not answered" in result.stderr
    assert "Traceback" not in result.stderr


def write_site(directory: Path, peer: AsteriskPeer, *, clock: str, campaign: bool = False) -> Path:
    path = directory / "sites.toml"
    text = SITE.format(
        clock=clock,
        test_numbers=json.dumps(sorted(NUMBERS.values())),
        campaign=str(campaign).lower(),
        port=peer.ami_port,
        spool=peer.spool,
    )
    path.write_text(text, encoding="utf-8")
    (directory / "inbox").mkdir(exist_ok=True)
    return path


def cartera(site: Path, peer: AsteriskPeer, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return run_site_process(site, *args, env={"CARTERA_TEST_AMI_SECRET": peer.ami_secret}, timeout=timeout)


def attempts(site: Path) -> list[tuple[int, str, str | None, str | None, str | None]]:
    with sqlite3.connect(site.parent / "var" / "t.db") as db:
        return db.execute("select id, state, outcome, raw_cause, agent from contact_attempts order by id").fetchall()


@pytest.mark.asterisk
def test_check_and_a_call_to_an_imported_account_archived_and_fetched(peer: AsteriskPeer, tmp_path: Path) -> None:
    site = write_site(tmp_path, peer, clock=SIMULATED_MONDAY)
    check = cartera(site, peer, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "ok    dialer asterisk_ami: Asterisk 22." in check.stdout
    assert peer.ami_secret not in check.stdout + check.stderr

    portfolio = write_portfolio(tmp_path, ["BCO-000107;Ana Gómez;300 555 0001;;1.250.000,00;COP"])
    imported = cartera(site, peer, "import", str(portfolio))
    assert imported.returncode == 0, imported.stderr

    call = cartera(site, peer, "call", "300 555 0001", "--account", "BCO-000107", "--wait", "60")
    assert call.returncode == 0, call.stderr
    assert "answered (16 Normal Clearing, dial ANSWER)" in call.stdout
    ((attempt_id, state, outcome, cause, agent),) = attempts(site)
    assert (state, outcome, cause) == ("finished", "answered", "16 Normal Clearing, dial ANSWER")
    assert agent in peer.agent_interfaces

    archived = cartera(site, peer, "archive")
    assert archived.returncode == 0, archived.stderr
    assert "1 archived and verified" in archived.stdout
    search = cartera(site, peer, "recordings", "search", "--account", "BCO-000107", "--json")
    (found,) = json.loads(search.stdout)
    assert (found["account"], found["phone"], found["agent"], found["state"]) == (
        "BCO-000107",
        "+573005550001",
        agent,
        "verified",
    )
    with sqlite3.connect(site.parent / "var" / "t.db") as db:
        ((local_path, vendor_call_id),) = db.execute(
            "select r.local_path, a.vendor_call_id from recordings r join contact_attempts a on a.id = r.attempt_id"
        ).fetchall()
    spooled = Path(local_path)
    assert spooled == (peer.spool / f"{vendor_call_id}.wav").resolve()
    out = tmp_path / "fetched.wav"
    got = cartera(site, peer, "recordings", "get", str(found["id"]), "-o", str(out))
    assert got.returncode == 0, got.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == found["sha256"]
    assert out.read_bytes() == spooled.read_bytes()
    assert found["location"].endswith(f"/{attempt_id}.wav")


@pytest.mark.asterisk
def test_unreached_debtors_through_the_node(
    peer: AsteriskPeer, tmp_path: Path, open_node: Callable[..., Node], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARTERA_TEST_AMI_SECRET", peer.ami_secret)
    site = write_site(tmp_path, peer, clock=SYSTEM_CLOCK)
    node = open_node(site)
    expected = {
        NUMBERS[CallOutcome.BUSY]: ("busy", "17 User busy, dial BUSY"),
        NUMBERS[CallOutcome.NO_ANSWER]: ("no_answer", "19 User alerting, no answer"),
        NUMBERS[CallOutcome.CONGESTION]: ("congestion", "34 Circuit/channel congestion, dial CONGESTION"),
        NUMBERS[CallOutcome.INVALID_NUMBER]: ("invalid_number", "1 Unallocated (unassigned) number, dial NOANSWER"),
    }
    placed = {node.calls.place_call(phone=phone, account=None, actor="test").attempt_id: phone for phone in expected}
    for attempt_id, phone in placed.items():
        result = node.calls.wait_for_call(attempt_id, 30)
        assert isinstance(result, CallResult), f"no outcome for {phone}"
        assert (result.outcome.value, result.raw_cause) == expected[phone]
    stored = {(outcome, cause) for _, state, outcome, cause, _ in attempts(site) if state == "finished"}
    assert stored == set(expected.values())


@pytest.mark.asterisk
def test_asterisk_restarted_mid_campaign_loses_no_call_and_places_none_twice(
    own_peer: AsteriskPeer, tmp_path: Path
) -> None:
    own_peer.set_talk_seconds(2)
    site = write_site(tmp_path, own_peer, clock=SIMULATED_MONDAY, campaign=True)  # 4 agents x 2.0: 8 at once
    write_portfolio(tmp_path / "inbox", [f"BCO-{n};Deudor {n};300 555 {n:02d}01;;1.000,00;COP" for n in range(1, 17)])
    process = subprocess.Popen(
        [sys.executable, str(REPO / "run_site.py"), "--config", str(site), "--site", "t", "run", "--duration", "15"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "CARTERA_TEST_AMI_SECRET": own_peer.ami_secret},
    )
    try:
        deadline = time.monotonic() + 20
        while own_peer.debtor_channels() < 6:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the campaign did not fill its lines"
            time.sleep(0.1)
        time.sleep(1.5)
        own_peer.restart_asterisk(crash=True)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    rows = attempts(site)
    assert rows, "no call was placed"
    assert all(state == "finished" for _, state, *_ in rows), [row for row in rows if row[1] != "finished"]
    cut = [row for row in rows if (row[3] or "").endswith("Asterisk restarted during the call")]
    assert cut, "no call was in flight when Asterisk restarted"
    after = [row for row in rows if row[0] > max(row[0] for row in cut) and row[3] == "16 Normal Clearing, dial ANSWER"]
    assert after, "the campaign did not go on after the restart"
    assert len({row[0] for row in rows}) == len(rows)
    invites = own_peer.invites()
    twice = {attempt: ids for attempt, ids in invites.items() if len(ids) > 1}
    assert not twice, f"attempts dialled twice: {twice}"
    assert set(invites) <= {str(row[0]) for row in rows}
    assert "asterisk.connected" in err


def kill_node_with_calls_up(peer: AsteriskPeer, tmp_path: Path, calls: int) -> tuple[Path, list[int]]:
    """A campaign of ``calls`` accounts run until each one's debtor's channel is up, then the node kill -9'd."""
    site = write_site(tmp_path, peer, clock=SIMULATED_MONDAY, campaign=True)
    write_portfolio(tmp_path / "inbox", [f"BCO-{n};Deudor {n};300 555 {n:02d}01;;1.000,00;COP" for n in range(calls)])
    env = {"CARTERA_TEST_AMI_SECRET": peer.ami_secret}
    left = kill_site_with_calls_in_flight(site, calls, env=env, ready=lambda: peer.debtor_channels() >= calls)
    assert len(left) == calls
    return site, left


@pytest.mark.asterisk
def test_a_killed_nodes_calls_still_up_are_followed_to_their_real_end(
    peer: AsteriskPeer, talk: Callable[[float], None], tmp_path: Path
) -> None:
    talk(60)  # still talking when the node starts again; its stop hangs them up
    site, left = kill_node_with_calls_up(peer, tmp_path, 4)
    try:
        again = cartera(site, peer, "--log-format", "json", "run", "--duration", "3")
    finally:
        peer.action("Hangup", Channel="/^PJSIP/carrier-/")  # the calls no node took over, if any
    assert again.returncode == 0, again.stderr
    rows = {row[0]: row for row in attempts(site)}
    assert placing(site) == []
    for attempt in left:
        _, _, outcome, cause, _ = rows[attempt]
        assert outcome == "answered", cause
        assert cause is not None
        assert cause.startswith("16 Normal Clearing")
        assert "taken over from a killed run" in cause
    with sqlite3.connect(site.parent / "var" / "t.db") as db:
        recorded = db.execute("select attempt_id from recordings where attempt_id is not null").fetchall()
    assert sorted(attempt for (attempt,) in recorded) == left
    reconciled = [json.loads(line) for line in again.stderr.splitlines() if '"asterisk.reconciled"' in line]
    assert [(e["followed"], e["unknown"]) for e in reconciled] == [(len(left), 0)]
    assert f"reconciled   {len(left)} calls a killed run left in flight: {len(left)} answered" in again.stdout


@pytest.mark.asterisk
def test_a_killed_nodes_calls_that_ended_meanwhile_are_unknown(
    peer: AsteriskPeer, talk: Callable[[float], None], tmp_path: Path
) -> None:
    talk(1)
    site, left = kill_node_with_calls_up(peer, tmp_path, 3)
    deadline = time.monotonic() + 30
    while peer.debtor_channels():
        assert time.monotonic() < deadline, "the calls did not end"
        time.sleep(0.2)
    again = cartera(site, peer, "run", "--duration", "1")
    assert again.returncode == 0, again.stderr
    rows = {row[0]: row for row in attempts(site)}
    assert placing(site) == []
    for attempt in left:
        _, _, outcome, cause, _ = rows[attempt]
        assert outcome == "unknown"
        assert cause is not None
        assert cause.startswith("channel gone when the node restarted")
    assert f"reconciled   {len(left)} calls a killed run left in flight: {len(left)} unknown" in again.stdout
