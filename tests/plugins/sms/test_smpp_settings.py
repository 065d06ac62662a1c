"""The smpp plugin's settings at their edges, its rate limiter against the send's deadline, and the mode of the
submit ledger's lock file (round 23 C-F11, C-F12)."""

from __future__ import annotations

import itertools
import os
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from cartera.core.config import load_site
from cartera.core.errors import ConfigError
from cartera.core.hooks import load_plugins
from cartera.core.models import SmsState
from cartera.core.testing.context import CapturingContext
from cartera.plugins.sms.smpp.client import SmppLink
from cartera.plugins.sms.smpp.config import SmppConfig
from cartera.plugins.sms.smpp.ledger import SubmitLedger
from cartera.plugins.sms.smpp.plugin import LEDGER_FILE, SmppGateway
from tests.plugins.sms.test_smpp_hostile import FakeSmsc, _config, _message
from tests.test_config_secret_errors import SMPP, site_with

pytestmark = pytest.mark.abuse


def _refused(tmp_path: Path, setting: str) -> str:
    """The configuration error site ``t`` gets with ``setting`` in its smpp section."""
    config = site_with(tmp_path, "sms", SMPP.format(setting=setting))
    with pytest.raises(ConfigError) as raised:
        load_site(config, "t", load_plugins().collect_adapters())
    return str(raised.value)


@pytest.mark.parametrize(
    ("setting", "key", "says"),
    [
        # the first rebind an hour after a failure, though reconnect_max_s says at most a second
        ("reconnect_min_s = 3600\nreconnect_max_s = 1", "reconnect_max_s", "less than reconnect_min_s (3600)"),
        # one part every 31 years
        ("messages_per_second = 1e-9", "messages_per_second", "greater than or equal to 0.1"),
        # a part waiting 10 s for its turn, its send given 5
        ("messages_per_second = 0.1\nsubmit_timeout_s = 5", "submit_timeout_s", "one part every 10s"),
        # round 24: a text behind another went at the very end of its send, no time left for its answer: in doubt
        (
            "messages_per_second = 0.2\nresponse_timeout_s = 2\nsubmit_timeout_s = 6.9",
            "submit_timeout_s",
            "one part every 5s, and 2s for its answer",
        ),
        # a keepalive at every turn of the link's loop
        ("enquire_link_s = 1e-9", "enquire_link_s", "greater than or equal to 1"),
        # a ledger emptied at every open: every receipt of a text sent before a restart unknown
        ("ledger_retention_h = 1e-9", "ledger_retention_h", "greater than or equal to 24"),
    ],
    ids=["reconnect", "rate", "rate-deadline", "rate-answer", "enquire-link", "retention"],
)
def test_settings_at_their_edges_are_refused_naming_the_key(tmp_path: Path, setting: str, key: str, says: str) -> None:
    message = _refused(tmp_path, f'password = "p4ss-ok"\n{setting}')
    assert f"key 'sms.{key}': " in message, message
    assert says in message, message


@pytest.mark.parametrize(
    ("password", "says"),
    [
        ("x" * 40, "40 characters; SMPP 3.4 carries at most 8"),  # bound with its first 8, silently
        ("pässwörd€", "9 characters; SMPP 3.4 carries at most 8"),
        ("pw€-ok", "holds a character outside Latin-1"),  # the bind could never be written
    ],
    ids=["long", "long-latin1", "not-latin1"],
)
def test_a_password_smpp_cannot_carry_is_refused_never_shown(tmp_path: Path, password: str, says: str) -> None:
    message = _refused(tmp_path, f'password = "{password}"')
    assert "key 'sms.password': " in message, message
    assert says in message, message
    assert password not in message, message
    assert "€" not in message, message  # not one character of it


def test_settings_within_their_edges_are_taken() -> None:
    config = _config(2775, password="Sm7q\"\\#ñ", reconnect_min_s=5, reconnect_max_s=5, messages_per_second=0.1,
                     submit_timeout_s=12, enquire_link_s=1, ledger_retention_h=24)  # fmt: skip
    assert _config(2775, response_timeout_s=60, submit_timeout_s=30).submit_timeout_s == 30  # half of it kept
    assert (config.reconnect_min_s, config.reconnect_max_s, config.messages_per_second) == (5, 5, 0.1)
    assert SmppConfig.model_validate(config.model_dump() | {"password": "p4ss-ok"}).password.get_secret_value()


# --- the rate limiter's wait is the send's, bounded by submit_timeout_s ---------------------------------------


class HeldClock:
    """time.monotonic as the test says; time.sleep records the wait and moves the clock on."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        with self._lock:
            return self.now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds


@contextmanager
def on_held_clock(
    config: SmppConfig, context: CapturingContext, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[SmppGateway, HeldClock]]:
    """A started gateway once bound, its sends and its limiter on a held clock (its one token at the clock's now);
    stopped after."""
    gateway = SmppGateway(config, context)
    gateway.start()
    try:
        assert gateway._link.wait_bound(15)
        clock = HeldClock()
        monkeypatch.setattr("cartera.plugins.sms.smpp.plugin.time", clock)
        gateway._bucket._stamp = clock.now
        yield gateway, clock
    finally:
        gateway.stop()


@pytest.fixture
def smsc() -> Iterator[FakeSmsc]:
    server = FakeSmsc(lambda _conn, _session: None)
    yield server
    server.close()


def test_a_text_whose_last_part_s_turn_comes_after_submit_timeout_s_is_refused_before_its_first_part(
    smsc: FakeSmsc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 23 C-F11: the limiter slept whatever the turn needed, past the send's submit_timeout_s (20 s for a
    second text at 0.05 a second and submit_timeout_s 2; 31 years at 1e-9), where stop could not wake it. Round 24
    C-F4: the turn was then checked part by part, so parts 1 and 2 went and part 3 failed: the debtor got a
    fragment. At 0.2 parts a second and submit_timeout_s 10, a text of three parts after another text gets its
    parts' turns 5, 10 and 15 s on: the last is past the deadline, so no part goes and no turn is taken."""
    config = _config(smsc.port, messages_per_second=0.2, submit_timeout_s=10)
    with on_held_clock(config, CapturingContext(tmp_path), monkeypatch) as (gateway, clock):
        first = gateway.send(_message("uno"))
        second = gateway.send(_message("x" * 400))  # three parts
    assert first.state is SmsState.SUBMITTED, first.detail
    assert second.state is SmsState.FAILED
    assert second.detail == (
        "not submitted: the turn of part 3/3 under messages_per_second (0.2) comes in 15s, after submit_timeout_s "
        "(10s) less 2s for its answer; no part was sent"
    )
    assert clock.slept == []  # not one part waited for
    assert smsc.submits == 1  # the first text only
    assert gateway._bucket.take(clock.now + 5) is None  # none of its turns was taken: the next turn is 5 s on


def test_a_text_whose_last_part_would_have_no_time_for_its_answer_is_refused_before_its_first_part(
    smsc: FakeSmsc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 24 C-F5: a part written at the end of submit_timeout_s had what was left for its answer, 1 s here
    against a response_timeout_s of 2, and ended in doubt if the SMSC took longer. A part is written only with
    response_timeout_s (at most half of submit_timeout_s) left for its answer."""
    config = _config(smsc.port, messages_per_second=0.2, response_timeout_s=2, submit_timeout_s=11)
    with on_held_clock(config, CapturingContext(tmp_path), monkeypatch) as (gateway, clock):
        first = gateway.send(_message("uno"))
        second = gateway.send(_message("x" * 216))  # two parts: turns 5 and 10 s on
    assert first.state is SmsState.SUBMITTED, first.detail
    assert second.detail == (
        "not submitted: the turn of part 2/2 under messages_per_second (0.2) comes in 10s, after submit_timeout_s "
        "(11s) less 2s for its answer; no part was sent"
    )
    assert (clock.slept, smsc.submits) == ([], 1)


def test_every_part_whose_turn_fits_the_deadline_goes(
    smsc: FakeSmsc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 24 C-F4: a text of two parts went half when the link took a moment to be bound: part 2's turn, 10 s
    after part 1 at 0.1 parts a second, was checked against a deadline taken before part 1. The turns are now
    taken for the whole text as it starts, so both fit submit_timeout_s (12 s) and part 2 keeps
    response_timeout_s (2 s) for its answer."""
    config = _config(smsc.port, messages_per_second=0.1, submit_timeout_s=12)
    with on_held_clock(config, CapturingContext(tmp_path), monkeypatch) as (gateway, clock):
        bound = gateway._link.wait_bound

        def taking_a_moment(timeout: float) -> bool:
            clock.sleep(2.5)  # a rebind before each part
            return bound(timeout)

        monkeypatch.setattr(gateway._link, "wait_bound", taking_a_moment)
        result = gateway.send(_message("x" * 216))  # two parts
    assert result.state is SmsState.SUBMITTED, result.detail
    assert smsc.submits == 2
    assert clock.now == pytest.approx(1010)  # part 2 went at its turn, 10 s after the send began


def test_a_submit_s_response_is_waited_for_no_longer_than_submit_timeout_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 24 C-F5: the wait was response_timeout_s (20 s) whatever was left of submit_timeout_s (3 s)."""
    silent = FakeSmsc(lambda _conn, _session: None, answer_submits=False)
    gateway = SmppGateway(_config(silent.port, response_timeout_s=20, submit_timeout_s=3), CapturingContext(tmp_path))
    gateway.start()
    waits: list[float | None] = []

    class Unanswered(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(timeout)
            return False  # no response: the wait runs out at once

    request = gateway._link._request

    def recording(*args: Any, **kwargs: Any) -> Any:
        waiter = request(*args, **kwargs)
        waiter.done = Unanswered()
        return waiter

    try:
        assert gateway._link.wait_bound(15)
        clock = HeldClock()
        monkeypatch.setattr("cartera.plugins.sms.smpp.plugin.time", clock)
        monkeypatch.setattr(gateway._link, "_request", recording)
        gateway._bucket._stamp = clock.now
        result = gateway.send(_message("uno"))
    finally:
        gateway.stop()
        silent.close()
    assert waits == [3.0]
    assert result.state is SmsState.FAILED
    assert result.detail.endswith("within 3s"), result.detail


def test_a_wait_for_the_turn_within_the_deadline_is_taken(
    smsc: FakeSmsc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """At the settings' edge (one part every 5 s, 2 s for an answer, submit_timeout_s 7) a text behind another
    waits for its turn and keeps response_timeout_s for its answer. With submit_timeout_s 5 (taken until round
    24) it was written at the deadline and waited 0 s for its answer: in doubt."""
    config = _config(smsc.port, messages_per_second=0.2, response_timeout_s=2, submit_timeout_s=7)
    waits: list[float | None] = []
    submit = SmppLink.submit

    def recording(self: SmppLink, *args: Any, **kwargs: Any) -> Any:
        waits.append(kwargs.get("wait_s"))
        return submit(self, *args, **kwargs)

    monkeypatch.setattr(SmppLink, "submit", recording)
    with on_held_clock(config, CapturingContext(tmp_path), monkeypatch) as (gateway, clock):
        results = [gateway.send(_message(text)) for text in ("uno", "dos")]
    assert [r.state for r in results] == [SmsState.SUBMITTED, SmsState.SUBMITTED], [r.detail for r in results]
    assert clock.slept == [5.0]
    assert smsc.submits == 2
    assert waits == [7.0, 2.0]  # the second text's answer: the 2 s left of its 7


def _sent_at(clock: HeldClock, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The held clock's reading at every submit_sm the gateway writes."""
    times: list[float] = []
    submit = SmppLink.submit

    def recording(self: SmppLink, *args: Any, **kwargs: Any) -> Any:
        times.append(clock.now)
        return submit(self, *args, **kwargs)

    monkeypatch.setattr(SmppLink, "submit", recording)
    return times


def test_a_text_that_waited_for_its_session_keeps_its_parts_apart(
    smsc: FakeSmsc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 25 C-F2 (from round 24's reserved turns): every part's turn was taken as the send began; when the
    session took 4 s to be bound, all three turns (0, 1 and 2 s on at one part a second) had passed and the parts
    went back to back. The turns keep their spacing from the parts' actual sends."""
    config = _config(smsc.port, messages_per_second=1, burst=1, submit_timeout_s=20)
    with on_held_clock(config, CapturingContext(tmp_path), monkeypatch) as (gateway, clock):
        bound, rebinds = gateway._link.wait_bound, [4.0]

        def rebinding_first(timeout: float) -> bool:
            if rebinds:
                clock.sleep(rebinds.pop())  # the session lost as the send begins, bound again 4 s later
            return bound(timeout)

        monkeypatch.setattr(gateway._link, "wait_bound", rebinding_first)
        sent = _sent_at(clock, monkeypatch)
        result = gateway.send(_message("x" * 400))  # three parts
    assert result.state is SmsState.SUBMITTED, result.detail
    assert sent == [1004.0, 1005.0, 1006.0]


def test_the_turns_a_late_text_s_parts_take_are_not_another_text_s(
    smsc: FakeSmsc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 26 C-F3: the later parts of a text whose part 1 went late (a wait for the session, a throttled retry)
    were shifted by the delay without the bucket knowing: a text sent after it got a turn its last part used, and
    the turns another sender reserved during the wait were those its parts 2 and 3 were shifted onto (two
    submit_sm in one instant at one part a second). The late parts take turns of their own from the bucket."""
    config = _config(smsc.port, messages_per_second=1, burst=1, submit_timeout_s=20)
    with on_held_clock(config, CapturingContext(tmp_path), monkeypatch) as (gateway, clock):
        bound, rebinds = gateway._link.wait_bound, [6.0]
        others: list[float] = []

        def rebinding_first(timeout: float) -> bool:
            if rebinds:  # another sender reserves 5 turns 2 s into the wait: 1003 to 1007
                turns = gateway._bucket.reserve(5, clock.now + 2, clock.now + 100)
                assert isinstance(turns, list)
                others.extend(turns)
                clock.sleep(rebinds.pop())  # the session lost as the send begins, bound again 6 s later
            return bound(timeout)

        monkeypatch.setattr(gateway._link, "wait_bound", rebinding_first)
        sent = _sent_at(clock, monkeypatch)
        late = gateway.send(_message("x" * 400))  # three parts
        after = gateway.send(_message("uno"))
    assert (late.state, after.state) == (SmsState.SUBMITTED, SmsState.SUBMITTED), (late.detail, after.detail)
    assert others == [1003.0, 1004.0, 1005.0, 1006.0, 1007.0]
    assert sent[0] == 1006.0  # part 1 once bound again
    every = sorted(sent + others[4:])  # the others' turns from part 1's on
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(every)), (sent, others)


# --- the ledger's lock file ----------------------------------------------------------------------------------


def test_the_ledgers_lock_file_is_the_owners_to_read_and_write_only(tmp_path: Path) -> None:
    """Round 23 C-F12: it was created with no mode (0o777 less the umask: -rwxr-xr-x)."""
    inherited = os.umask(0o022)
    try:
        ledger = SubmitLedger(tmp_path / LEDGER_FILE, fsync=False, retention_s=3600)
        ledger.open()
        ledger.close()
    finally:
        os.umask(inherited)
    mode = stat.S_IMODE((tmp_path / f"{LEDGER_FILE}.lock").stat().st_mode)
    assert oct(mode) == oct(0o600)
