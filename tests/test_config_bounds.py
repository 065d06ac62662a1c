"""Every duration, speed and size setting has an upper bound: an absurd value (a "keep for ever" 3,000,000 days,
1e300 seconds) is refused when the configuration is loaded, naming file, line, site and key, rather than passing
``check`` and overflowing a date or a timer at ``run`` (red team round 15 M1)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cartera.core.config import load_site
from cartera.core.errors import ConfigError
from cartera.core.hooks import Hooks

pytestmark = pytest.mark.abuse


def _with(text: str, table: str, line: str) -> str:
    """``text`` with ``line`` (``key = value``) set in table ``[sites.t.TABLE]``, replacing the key if there."""
    header = f"[sites.t.{table}]"
    if header not in text:
        return f"{text}\n{header}\n{line}\n"
    head, rest = text.split(header + "\n", 1)
    body, sep, tail = rest.partition("\n[")
    key = line.split("=", 1)[0].strip()
    kept = [row for row in body.splitlines() if row.split("=", 1)[0].strip() != key]
    return head + header + "\n" + "\n".join([line, *kept]) + sep + tail


ABSURD = [
    ("archival.retention", "default_days = 3000000", "archival.retention.default_days"),
    ("archival.retention", 'portfolios = { "BANCO/TARJETAS" = 3000000 }', "archival.retention.portfolios"),
    ("archival", "local_retention_hours = 999999999", "archival.local_retention_hours"),
    ("archival", "every_seconds = 1e10", "archival.every_seconds"),
    ("campaign.abandonment", "window_days = 1000000", "campaign.abandonment.window_days"),
    ("campaign.abandonment", "window_days = 1e300", "campaign.abandonment.window_days"),
    ("campaign.abandonment", "redial_after_hours = 1e300", "campaign.abandonment.redial_after_hours"),
    ("campaign.listing", "history_days = 100000000000", "campaign.listing.history_days"),
    ("campaign.listing", "relearn_minutes = 1e300", "campaign.listing.relearn_minutes"),
    ("campaign.listing", "hour_strength = 1e300", "campaign.listing.hour_strength"),
    ("campaign", "retry_after_minutes = 1e12", "campaign.retry_after_minutes"),
    ("campaign", "tick_seconds = 1e300", "campaign.tick_seconds"),
    ("campaign", "max_attempts_per_day = 100000000000", "campaign.max_attempts_per_day"),
    ("sync", "every_seconds = 1e300", "sync.every_seconds"),
    ("sync", "max_delivery_rows = 100000000000000", "sync.max_delivery_rows"),
    ("clock", "speed = 1e300", "clock.speed"),
    ("clock", "speed = 1e-300", "clock.speed"),
    ("web", "check_seconds = 1e300", "web.check_seconds"),
    ("dialer", "talk_seconds = [5, 1e300]", "dialer.talk_seconds"),
    ("dialer", "abandon_after = 1e300", "dialer.abandon_after"),
]


@pytest.mark.parametrize(("table", "line", "key"), ABSURD)
def test_an_absurd_number_is_refused_naming_file_line_and_key(
    hooks: Hooks, sites_toml: Path, *, table: str, line: str, key: str
) -> None:
    text = _with(sites_toml.read_text(), table, line)
    sites_toml.write_text(text)
    at = next(i for i, row in enumerate(text.splitlines(), 1) if row == line)
    with pytest.raises(ConfigError) as raised:
        load_site(sites_toml, "t", hooks.collect_adapters())
    message = str(raised.value)
    assert message.startswith(f"{sites_toml}:{at}: site 't', key '{key}"), message
    assert "less than or equal to" in message or "at most" in message or "greater than" in message, message


def test_the_largest_values_allowed_still_load(hooks: Hooks, sites_toml: Path) -> None:
    text = sites_toml.read_text()
    for table, line in [
        ("archival.retention", "default_days = 36500"),
        ("archival", "local_retention_hours = 876000"),
        ("campaign.abandonment", "window_days = 366"),
        ("campaign.listing", "history_days = 3660"),
        ("sync", "every_seconds = 86400"),
        ("clock", "speed = 100000"),
    ]:
        text = _with(text, table, line)
    sites_toml.write_text(text)
    site = load_site(sites_toml, "t", hooks.collect_adapters())
    assert site.section.archival.retention.default_days == 36500
    assert site.section.clock.speed == 100000


def test_the_demo_config_is_still_valid(hooks: Hooks) -> None:
    repo = Path(__file__).resolve().parent.parent
    assert load_site(repo / "sites.toml", "demo", hooks.collect_adapters()).name == "demo"
