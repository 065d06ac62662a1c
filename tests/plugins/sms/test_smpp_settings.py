"""The smpp plugin's settings at their edges, its rate limiter against the send's deadline, and the mode of the
submit ledger's lock file (round 23 C-F11, C-F12)."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from cartera.core.config import load_site
from cartera.core.errors import ConfigError
from cartera.core.hooks import load_plugins
from cartera.core.models import SmsState
from cartera.core.testing.context import CapturingContext
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
        # a keepalive at every turn of the link's loop
        ("enquire_link_s = 1e-9", "enquire_link_s", "greater than or equal to 1"),
        # a ledger emptied at every open: every receipt of a text sent before a restart unknown
        ("ledger_retention_h = 1e-9", "ledger_retention_h", "greater than or equal to 24"),
    ],
    ids=["reconnect", "rate", "rate-deadline", "enquire-link", "retention"],
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
                     submit_timeout_s=10, enquire_link_s=1, ledger_retention_h=24)  # fmt: skip
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


@pytest.fixture
def smsc() -> Iterator[FakeSmsc]:
    server = FakeSmsc(lambda _conn, _session: None)
    yield server
    server.close()


def test_a_part_whose_turn_comes_after_submit_timeout_s_is_not_waited_for(
    smsc: FakeSmsc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Round 23 C-F11: the limiter slept whatever the turn needed, past the send's submit_timeout_s (20 s for a
    second text at 0.05 a second and submit_timeout_s 2; 31 years at 1e-9), where stop could not wake it. At 0.2
    parts a second and submit_timeout_s 10, a text of three parts after another text gets its first two parts'
    turns 5 and 10 s on, its third's 15 s on: that part is not waited for, the text fails saying why."""
    config = _config(smsc.port, messages_per_second=0.2, submit_timeout_s=10)
    gateway = SmppGateway(config, CapturingContext(tmp_path))
    gateway.start()
    try:
        assert gateway._link.wait_bound(15)
        clock = HeldClock()
        monkeypatch.setattr("cartera.plugins.sms.smpp.plugin.time", clock)
        gateway._bucket._stamp = clock.now  # the limiter on the held clock, its one token there
        first = gateway.send(_message("uno"))
        second = gateway.send(_message("x" * 400))  # three parts
    finally:
        gateway.stop()
    assert first.state is SmsState.SUBMITTED, first.detail
    assert second.state is SmsState.FAILED
    assert second.detail == (
        "part 3/3 not submitted: its turn under messages_per_second (0.2) comes in 5s, after submit_timeout_s (10s)"
    )
    assert clock.slept == [5.0, 5.0]  # parts 1 and 2; never the third's
    assert smsc.submits == 3
    assert gateway._bucket.take(clock.now + 5) is None  # the third's token was not taken: the next turn is its


def test_a_wait_for_the_turn_within_the_deadline_is_taken(
    smsc: FakeSmsc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway = SmppGateway(_config(smsc.port, messages_per_second=0.2, submit_timeout_s=5), CapturingContext(tmp_path))
    gateway.start()
    try:
        assert gateway._link.wait_bound(15)
        clock = HeldClock()
        monkeypatch.setattr("cartera.plugins.sms.smpp.plugin.time", clock)
        gateway._bucket._stamp = clock.now
        results = [gateway.send(_message(text)) for text in ("uno", "dos")]
    finally:
        gateway.stop()
    assert [r.state for r in results] == [SmsState.SUBMITTED, SmsState.SUBMITTED], [r.detail for r in results]
    assert clock.slept == [5.0]
    assert smsc.submits == 2


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
