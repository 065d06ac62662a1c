"""The SIP trunk dialer: its parts on their own, then the real thing through Kamailio to SIPp.

Tests marked ``sip`` run Kamailio (digest authentication, record-routing) in front of a SIPp UAS playing the
debtors' phones (tests/peers/sip.py); they skip with ``PEER UNAVAILABLE`` when the peers cannot be provisioned.
The tests about shutdown and many calls at once run the dialer in a child process and assert it exits 0.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cartera.core.hooks import load_plugins
from cartera.core.models import CallOutcome, CallRequest, CallResult
from cartera.core.registry import AdapterCatalog
from cartera.core.testing.context import CapturingContext
from cartera.core.testing.dialer import DialerConformance
from cartera.plugins.dialers.sip_trunk.client import SipTrunkError
from cartera.plugins.dialers.sip_trunk.config import SipTrunkConfig
from cartera.plugins.dialers.sip_trunk.options import host_port
from cartera.plugins.dialers.sip_trunk.outcomes import call_outcome, raw_cause
from cartera.plugins.dialers.sip_trunk.plugin import SipTrunkDialer, cartera_register_dialers
from tests.conftest import REPO, run_site_process
from tests.peers import unavailable
from tests.peers.net import free_port
from tests.peers.sip import (
    LATE_ANSWER,
    MORE_NUMBERS,
    NUMBERS,
    REFER_FORBIDDEN,
    REFER_NOT_IMPLEMENTED,
    SipPeer,
    running_sip_peer,
)

ANSWERS = NUMBERS[CallOutcome.ANSWERED]
RINGS = NUMBERS[CallOutcome.NO_ANSWER]
SETTINGS: dict[str, Any] = {
    "account_uri": "sip:cobranza@sbc.example.net",
    "dial_uri": "sip:{digits}@sbc.example.net",
    "queue_uri": "sip:agentes@pbx.example.net",
}

# --- without a peer ---------------------------------------------------------------------------------------


def test_registers_as_sip_trunk() -> None:
    catalog = AdapterCatalog.empty()
    cartera_register_dialers(catalog.dialers)
    assert catalog.dialers.get("sip_trunk") is SipTrunkDialer
    assert load_plugins(entry_points=False).collect_adapters().dialers.get("sip_trunk") is SipTrunkDialer


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (486, CallOutcome.BUSY),
        (600, CallOutcome.BUSY),
        (480, CallOutcome.NO_ANSWER),
        (408, CallOutcome.NO_ANSWER),
        (603, CallOutcome.REJECTED),
        (404, CallOutcome.INVALID_NUMBER),
        (484, CallOutcome.INVALID_NUMBER),
        (503, CallOutcome.CONGESTION),
        (500, CallOutcome.FAILED),
        (403, CallOutcome.FAILED),
        (407, CallOutcome.FAILED),
        (487, CallOutcome.FAILED),
        (0, CallOutcome.FAILED),
    ],
)
def test_final_response_to_outcome(status: int, outcome: CallOutcome) -> None:
    assert call_outcome(answered=False, status=status, ring_timed_out=False) is outcome


def test_answer_and_ring_timeout_decide_first() -> None:
    assert call_outcome(answered=True, status=200, ring_timed_out=False) is CallOutcome.ANSWERED
    assert call_outcome(answered=False, status=487, ring_timed_out=True) is CallOutcome.NO_ANSWER


def test_a_cancel_for_core_decides_before_all() -> None:
    assert call_outcome(answered=False, status=487, ring_timed_out=False, cancelled=True) is CallOutcome.CANCELLED
    assert call_outcome(answered=True, status=200, ring_timed_out=False, cancelled=True) is CallOutcome.CANCELLED


def test_raw_cause_keeps_the_status_and_what_the_dialer_did() -> None:
    assert raw_cause(status=486, reason="Busy Here", notes=[]) == "486 Busy Here"
    assert raw_cause(status=200, reason="OK", notes=["REFER x: 202 Accepted"]) == "200 OK, REFER x: 202 Accepted"
    assert raw_cause(status=0, reason="", notes=["not placed"]) == "no SIP final response, not placed"


def test_config_defaults_and_secret() -> None:
    config = SipTrunkConfig.model_validate(
        {**SETTINGS, "registrar": "sip:sbc.example.net", "username": "cobranza", "password": "s3cret-value"}
    )
    assert (config.max_calls, config.local_port, config.codecs) == (30, 5060, ("PCMU/8000", "PCMA/8000"))
    assert "s3cret-value" not in repr(config)
    assert "s3cret-value" not in str(config.model_dump())


@pytest.mark.parametrize(
    ("settings", "fragment"),
    [
        ({"dial_uri": "sip:trunk.example.net"}, "must contain {number} or {digits}"),
        ({"dial_uri": "sip:{phone}@trunk"}, "unknown field {phone}"),
        ({"dial_uri": "tel:{number}"}, "must be a sip: or sips: URI"),
        ({"queue_uri": "agentes"}, "String should match pattern"),
        ({"username": "cobranza"}, "username and password go together"),
        ({"registrar": "sip:sbc.example.net"}, "a registrar needs username and password"),
        ({"max_calls": 121}, "less than or equal to 120"),
        ({"codecs": []}, "at least 1 item"),
        ({"caller_id": "6015 550000"}, "String should match pattern"),
        ({"ring_timeout": 5}, "Extra inputs are not permitted"),
        ({"ring_timeout_s": 10}, "10 s: a call rings at least 15 s before it is given up"),
    ],
)
def test_config_rejects(settings: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SipTrunkConfig.model_validate({**SETTINGS, **settings})
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("sip:sbc.example.net", ("sbc.example.net", 5060)),
        ("sips:sbc.example.net", ("sbc.example.net", 5061)),
        ("sip:{digits}@10.0.0.1:5080;transport=udp", ("10.0.0.1", 5080)),
        ("sip:proxy.example.net;lr", ("proxy.example.net", 5060)),
        ("sip:[::1]:5070", ("::1", 5070)),
    ],
)
def test_host_port_of_a_sip_uri(uri: str, expected: tuple[str, int]) -> None:
    assert host_port(uri) == expected


# --- against Kamailio and SIPp ------------------------------------------------------------------------------

sip = pytest.mark.sip


@pytest.fixture(scope="module")
def peer() -> Iterator[SipPeer]:
    try:
        with running_sip_peer() as running:
            yield running
    except RuntimeError as exc:
        unavailable(f"kamailio/sipp: {exc}")


def build(context: CapturingContext, settings: dict[str, Any]) -> SipTrunkDialer:
    return SipTrunkDialer(SipTrunkConfig.model_validate({"local_port": 0, **settings}), context)


@pytest.fixture
def started(peer: SipPeer, tmp_path: Path) -> Iterator[tuple[SipTrunkDialer, CapturingContext]]:
    """A dialer registered and authenticating at Kamailio."""
    context = CapturingContext(tmp_path / "dialer")
    dialer = build(context, peer.trunk_settings())
    dialer.start()
    try:
        yield dialer, context
    finally:
        dialer.stop()
    assert dialer.worker_exit_codes == [0, 0], "a SIP worker process did not exit cleanly"


def request(context: CapturingContext, phone: str, attempt_id: int) -> CallRequest:
    return CallRequest(attempt_id=attempt_id, site=context.site, phone=phone, account_ref="ACC-1")


def one_call(dialer: SipTrunkDialer, context: CapturingContext, phone: str, attempt_id: int = 1) -> CallResult:
    dialer.place_call(request(context, phone, attempt_id))
    (result,) = context.wait_for_calls(1, 20)
    return result


@sip
class TestSipTrunkConformance(DialerConformance):
    timeout = 30.0  # the unanswered number rings the 15 s ring timeout

    @pytest.fixture
    def context(self, tmp_path: Path) -> CapturingContext:
        return CapturingContext(tmp_path / "dialer")

    @pytest.fixture
    def numbers(self) -> dict[CallOutcome, str]:
        return dict(NUMBERS)

    @pytest.fixture
    def dialer(self, peer: SipPeer, context: CapturingContext) -> Iterator[SipTrunkDialer]:
        dialer = build(context, peer.trunk_settings())
        dialer.start()
        yield dialer
        dialer.stop()
        assert dialer.worker_exit_codes == [0, 0], "a SIP worker process did not exit cleanly"


@sip
@pytest.mark.parametrize(("phone", "outcome"), sorted(MORE_NUMBERS.items()))
def test_more_final_responses(
    started: tuple[SipTrunkDialer, CapturingContext], phone: str, outcome: CallOutcome
) -> None:
    dialer, context = started
    result = one_call(dialer, context, phone)
    assert result.outcome is outcome, result.raw_cause
    assert result.raw_cause.startswith(phone[-3:]), result.raw_cause


@sip
def test_answered_call_is_referred_to_the_queue(
    peer: SipPeer, started: tuple[SipTrunkDialer, CapturingContext]
) -> None:
    dialer, context = started
    result = one_call(dialer, context, ANSWERS, attempt_id=4242)
    queue = peer.trunk_settings()["queue_uri"]
    assert result.outcome is CallOutcome.ANSWERED
    expected = f"200 OK, REFER {queue}: 202 Accepted, transfer 200 OK: taken by the queue"
    assert result.raw_cause == expected, peer.sipp_errors(result.vendor_call_id)
    assert result.vendor_call_id
    invite = peer.wait_received("INVITE", result.vendor_call_id)  # through the port that challenges every INVITE
    assert re.search(r"^X-Cartera-Attempt: 4242\r?$", invite, re.MULTILINE)
    assert re.search(r"^Record-Route: ", invite, re.MULTILINE)
    assert peer.password not in invite
    refer = peer.wait_received("REFER", result.vendor_call_id)
    assert re.search(rf"^Refer-To: <?{re.escape(queue)}>?\r?$", refer, re.MULTILINE | re.IGNORECASE)
    peer.wait_received("BYE", result.vendor_call_id)


@sip
@pytest.mark.parametrize(("phone", "status"), [(REFER_FORBIDDEN, "403 Forbidden"), (REFER_NOT_IMPLEMENTED, "501")])
def test_refused_transfer_is_reported_and_hung_up(
    peer: SipPeer, started: tuple[SipTrunkDialer, CapturingContext], phone: str, status: str
) -> None:
    dialer, context = started
    result = one_call(dialer, context, phone)
    queue = peer.trunk_settings()["queue_uri"]
    assert result.outcome is CallOutcome.ANSWERED
    assert result.raw_cause.startswith(f"200 OK, REFER {queue}: {status}"), result.raw_cause
    assert "taken by the queue" not in result.raw_cause
    peer.wait_received("BYE", result.vendor_call_id)


@sip
def test_ring_timeout_cancels_as_no_answer(peer: SipPeer, started: tuple[SipTrunkDialer, CapturingContext]) -> None:
    dialer, context = started
    result = one_call(dialer, context, RINGS)
    assert result.outcome is CallOutcome.NO_ANSWER
    assert result.raw_cause == "487 Request Terminated, cancelled after ringing 15s"
    assert result.ended_at is not None
    assert (result.ended_at - result.started_at).total_seconds() >= 15
    peer.wait_received("CANCEL", result.vendor_call_id)


@sip
def test_cancel_sends_a_cancel_before_the_ring_timeout(
    peer: SipPeer, started: tuple[SipTrunkDialer, CapturingContext]
) -> None:
    dialer, context = started
    dialer.place_call(request(context, RINGS, 4343))
    time.sleep(0.5)
    assert dialer.cancel(4343) is True
    (result,) = context.wait_for_calls(1, 20)
    assert result.outcome is CallOutcome.CANCELLED
    assert result.raw_cause == "487 Request Terminated, cancelled by the dialer before the answer"
    assert result.ended_at is not None
    assert (result.ended_at - result.started_at).total_seconds() < 15  # the ring timeout did not do it
    peer.wait_received("CANCEL", result.vendor_call_id)
    assert dialer.cancel(4343) is False


@sip
def test_check_registers_and_pings(peer: SipPeer, started: tuple[SipTrunkDialer, CapturingContext]) -> None:
    dialer, _ = started
    result = dialer.check()
    assert result.ok, result.detail
    assert f"sip:127.0.0.1:{peer.auth_port} answers OPTIONS: 200 Keepalive" in result.detail
    assert f"registered at sip:127.0.0.1:{peer.auth_port} (200 OK" in result.detail
    assert peer.password not in result.detail


@sip
def test_wrong_password_fails_start_without_leaking_it(peer: SipPeer, tmp_path: Path) -> None:
    dialer = build(CapturingContext(tmp_path), peer.trunk_settings(password="not-the-password"))
    with pytest.raises(SipTrunkError) as caught:
        dialer.start()
    assert "registration at" in str(caught.value)
    assert "401" in str(caught.value) or "403" in str(caught.value)
    assert "not-the-password" not in str(caught.value)
    dialer.stop()


@sip
def test_unauthenticated_calls_are_failed_with_the_status(peer: SipPeer, tmp_path: Path) -> None:
    """The authenticated port without credentials: Kamailio's 407 is the call's end, not a retry loop."""
    context = CapturingContext(tmp_path)
    settings = {**peer.trunk_settings(), "registrar": None, "username": None, "password": None}
    dialer = build(context, settings)
    dialer.start()
    try:
        result = one_call(dialer, context, ANSWERS)
    finally:
        dialer.stop()
    assert result.outcome is CallOutcome.FAILED
    assert result.raw_cause == "407 Proxy Authentication Required"


@sip
def test_ip_authenticated_trunk(peer: SipPeer, tmp_path: Path) -> None:
    context = CapturingContext(tmp_path)
    dialer = build(context, peer.ip_trunk_settings(caller_id="6015550000"))
    dialer.start()
    try:
        check = dialer.check()
        result = one_call(dialer, context, ANSWERS)
    finally:
        dialer.stop()
    assert check.ok, check.detail
    assert check.detail.startswith(f"IP-authenticated trunk; sip:127.0.0.1:{peer.trust_port} answers OPTIONS: 200")
    assert result.outcome is CallOutcome.ANSWERED, result.raw_cause
    assert "taken by the queue" in result.raw_cause
    invite = peer.wait_received("INVITE", result.vendor_call_id)
    assert re.search(r"^From: <sip:6015550000@127\.0\.0\.1", invite, re.MULTILINE)


def test_check_names_an_unreachable_trunk(tmp_path: Path) -> None:
    port = free_port()
    dialer = build(
        CapturingContext(tmp_path),
        {
            **SETTINGS,
            "dial_uri": f"sip:{{number}}@127.0.0.1:{port}",
            "local_address": "127.0.0.1",
            "check_timeout_s": 1,
            "max_calls": 1,  # one SIP worker process, the one check asks (30 calls start 8, ~1.6 CPU-seconds each)
        },
    )
    dialer.start()
    try:
        result = dialer.check()
    finally:
        dialer.stop()
    assert not result.ok
    assert f"127.0.0.1:{port}" in result.detail


# --- in a child process: it must exit 0 ----------------------------------------------------------------------


def run_child(tmp_path: Path, settings: dict[str, Any], numbers: list[str], **spec: Any) -> dict[str, Any]:
    results = tmp_path / "results.json"
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(
        json.dumps(
            {"settings": settings, "numbers": numbers, "data_dir": str(tmp_path / "child"), "results": str(results)}
            | spec
        )
    )
    done = subprocess.run(
        [sys.executable, "-m", "tests.peers.sip_dialer_child", str(spec_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-2000:]}"
    loaded: dict[str, Any] = json.loads(results.read_text())
    codes = loaded["worker_exit_codes"]
    assert codes == [0] * len(codes), f"SIP worker exit codes {codes}"
    assert codes, "no SIP worker ran"
    return loaded


@sip
def test_many_calls_at_once_through_kamailio(peer: SipPeer, tmp_path: Path) -> None:
    """24 calls ring at the same time (20 at least at SIPp), each is answered, REFERred and reported once; the
    process and its 6 SIP workers exit 0."""
    before = peer.most_calls_at_once()
    outcome = run_child(tmp_path, peer.trunk_settings(max_calls=24, ring_timeout_s=15), [LATE_ANSWER] * 24)
    calls = outcome["calls"]
    assert sorted(call["attempt"] for call in calls) == list(range(1, 25))
    assert all(call["outcome"] == "answered" and "taken by the queue" in call["cause"] for call in calls), calls
    assert peer.most_calls_at_once() >= max(before, 20)  # all 24 but on a loaded machine


@sip
def test_stop_with_calls_in_progress_exits_cleanly(peer: SipPeer, tmp_path: Path) -> None:
    """stop() while 20 calls ring or are being answered: each is reported once, and the process exits 0."""
    numbers = [RINGS, ANSWERS] * 10
    outcome = run_child(tmp_path, peer.trunk_settings(max_calls=20, ring_timeout_s=30), numbers, stop_after_s=0.5)
    calls = outcome["calls"]
    assert outcome["in_progress_at_stop"] >= 10
    assert sorted(call["attempt"] for call in calls) == list(range(1, 21))
    rang = [call for call in calls if numbers[call["attempt"] - 1] == RINGS]
    assert all(call["outcome"] == "failed" and "hung up by the dialer at stop" in call["cause"] for call in rang), rang


# --- through the node's command line ---------------------------------------------------------------------------

SITE = """
[sites.t]
timezone = "America/Bogota"
country = "CO"
data_dir = "var/t"

[sites.t.clock]
mode = "system"

[sites.t.compliance]
authorised_channels = ["call"]
test_numbers = ["{number}"]

[sites.t.dialer]
plugin = "sip_trunk"
account_uri = "{account_uri}"
dial_uri = "{dial_uri}"
queue_uri = "{queue_uri}"
registrar = "{registrar}"
username = "{username}"
password = "${{CARTERA_TEST_TRUNK_PASSWORD}}"
local_address = "127.0.0.1"
local_port = 0
max_calls = 4
"""


@sip
def test_check_and_call_from_the_command_line(peer: SipPeer, tmp_path: Path) -> None:
    """``check`` and ``call PHONE`` through run_site.py: the password comes from the environment, never shows."""
    site = tmp_path / "sites.toml"
    site.write_text(SITE.format(number=ANSWERS, **peer.trunk_settings()), encoding="utf-8")

    def cartera(*args: str) -> subprocess.CompletedProcess[str]:
        return run_site_process(site, *args, env={"CARTERA_TEST_TRUNK_PASSWORD": peer.password}, timeout=120)

    check = cartera("check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert f"dialer sip_trunk: sip:127.0.0.1:{peer.auth_port} answers OPTIONS: 200 Keepalive" in check.stdout
    call = cartera("call", ANSWERS, "--wait", "60")
    assert call.returncode == 0, call.stdout + call.stderr
    assert "answered (200 OK, REFER sip:cobranza@" in call.stdout, call.stdout
    for output in (check.stdout, check.stderr, call.stdout, call.stderr):
        assert peer.password not in output
