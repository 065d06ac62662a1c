"""Command-line values that make no sense are refused with exit 2 naming the option (red team rounds 5, 20, 21,
lows): a blank legal-hold reason, an instant outside the calendar the node can reason about, a wait or run duration
that is no sane number of seconds."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_sites
from tests.test_cli import assert_one_line_error, cartera

pytestmark = pytest.mark.abuse


@pytest.mark.parametrize(("command", "reason"), [("hold", ""), ("release", " "), ("hold", "\t\n")])
def test_a_blank_legal_hold_reason_is_refused(tmp_path: Path, command: str, reason: str) -> None:
    site = write_sites(tmp_path)
    result = cartera(site, "--site", "t", "recordings", command, "1", "--reason", reason)
    assert_one_line_error(result, 2, "--reason")


@pytest.mark.parametrize("at", ["9999-12-31T23:59:59", "0001-01-01T00:00:00+14:00", "0001-01-01T00:00:00"])
def test_an_out_of_range_instant_is_refused_naming_the_option(tmp_path: Path, at: str) -> None:
    site = write_sites(tmp_path)
    result = cartera(site, "--site", "t", "explain", "--phone", "+573001234567", "--at", at)
    assert_one_line_error(result, 2, "--at", "out of range")


@pytest.mark.parametrize("wait", ["1e309", "inf", "nan", "-1", "1e12"])
def test_a_wait_that_is_not_a_sane_number_of_seconds_is_refused_before_calling(tmp_path: Path, wait: str) -> None:
    """Round 20 I-F4: ``call --wait 1e309`` placed the call, then crashed (OverflowError) recording it failed."""
    site = write_sites(tmp_path)
    result = cartera(site, "--site", "t", "call", "--wait", wait, "3001000001")
    assert_one_line_error(result, 2, "--wait")
    assert "call.placing" not in result.stdout + result.stderr


@pytest.mark.parametrize("duration", ["nan", "-1", "0", "inf", "1e309"])
def test_a_run_duration_that_is_not_a_positive_number_of_seconds_is_refused_before_start(
    tmp_path: Path, duration: str
) -> None:
    """Round 21 C-F4: ``run --duration nan`` (or -1) started the node and stopped it at once with exit 0: a typo
    in a unit file made a restart loop that looked healthy."""
    site = write_sites(tmp_path)
    result = cartera(site, "--site", "t", "run", "--duration", duration)
    assert_one_line_error(result, 2, "--duration", "more than 0")
    assert "summary" not in (result.stdout + result.stderr).lower()


@pytest.mark.parametrize(("command", "extra"), [("get", ["-o", "x.wav"]), ("url", []), ("hold", ["--reason", "r"])])
@pytest.mark.parametrize("ident", ["99999999999999999999999", "0", "-5"])
def test_a_recording_id_out_of_range_is_refused(tmp_path: Path, command: str, extra: list[str], ident: str) -> None:
    """Round 20 I-F5: a huge id ended in ``OverflowError: Python int too large to convert to SQLite INTEGER``."""
    site = write_sites(tmp_path)
    result = cartera(site, "--site", "t", "recordings", command, ident, *extra)
    assert_one_line_error(result, 2, "id")
