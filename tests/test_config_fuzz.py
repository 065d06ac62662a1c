"""Hostile ``sites.toml``: any value of any TOML type at any key, and damaged text. Loading either gives the
site with each value as written (never a string turned number, a float turned integer...) or one
:class:`ConfigError` line naming the file and the site; never another exception."""

from __future__ import annotations

import enum
import tomllib
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from cartera.core.config import SiteConfig, load_site
from cartera.core.errors import ConfigError
from cartera.core.hooks import load_plugins
from cartera.core.registry import AdapterCatalog
from tests.conftest import write_sites

pytestmark = pytest.mark.abuse

FUZZ = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)

#: Keys of the test site (``tests/conftest.py``) and of its plugins, by their path under ``[sites.t]``.
KEYS = [
    ("timezone",),
    ("country",),
    ("data_dir",),
    ("log_format",),
    ("clock", "mode"),
    ("clock", "start"),
    ("clock", "speed"),
    ("compliance", "authorised_channels"),
    ("compliance", "contact_window"),
    ("compliance", "test_numbers"),
    ("campaign", "enabled"),
    ("campaign", "tick_seconds"),
    ("campaign", "max_attempts_per_day"),
    ("campaign", "reminder_sms"),
    ("archival", "every_seconds"),
    ("archival", "workers"),
    ("archival", "spool_patterns"),
    ("archival", "retention"),
    ("web", "port"),
    ("web", "enabled"),
    ("web", "bind"),
    ("web", "language"),
    ("dialer", "seed"),
    ("dialer", "agents"),
    ("dialer", "dial_ratio"),
    ("dialer", "ring_seconds"),
    ("dialer", "outcome_weights"),
    ("recording", "path"),
    ("recording", "fsync"),
    ("sms", "path"),
    ("crm_sync", "keep_files"),
    ("crm_sync", "encoding"),
    ("crm_sync", "legacy_encoding"),
    ("crm_sync", "delimiter"),
    ("crm_sync", "decimal_comma"),
    ("crm_sync", "date_formats"),
    ("crm_sync", "actions"),
    ("crm_sync", "columns"),
    ("crm_sync", "export"),
]

_text = st.text(st.characters(codec="utf-8"), max_size=12)
_tricky = st.sampled_from(
    ["12", "false", "true", "7.0", "1e3", "", " 8080 ", "utf-8", "cp850", "mac-roman", "America/Bogota", "CO",
     "simulated", "call", "/proc/cartera/x", "/etc/passwd/x", "../x", "${CARTERA_FUZZ_UNSET}", "07:00",
     "2026-11-23T08:00:00-05:00", "1700000000", "nan", "inf", "answered"]
)  # fmt: skip
_scalars = st.one_of(
    st.integers(-(2**63), 2**63 - 1),
    st.integers(-3, 70000),
    st.floats(),
    st.booleans(),
    _text,
    _tricky,
    st.datetimes(timezones=st.sampled_from([UTC, None])),
    st.dates(),
    st.times(),
)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_text | _tricky, inner, max_size=3),
    max_leaves=6,
)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, AdapterCatalog]:
    path = write_sites(tmp_path_factory.mktemp("fuzz"))
    return path, path.read_text(encoding="utf-8"), load_plugins(entry_points=False).collect_adapters()


def _load(path: Path, catalog: AdapterCatalog) -> SiteConfig | None:
    """The site, or ``None`` after checking the error is one line naming the file and the site."""
    try:
        return load_site(path, "t", catalog)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message
        assert message.startswith(str(path))
        assert "site 't'" in message or "TOML syntax error" in message
        return None


def _loaded(site: SiteConfig, key: tuple[str, ...]) -> Any:
    value: Any = site.plugins[key[0]].settings if key[0] in site.plugins else site.section
    for part in key[1:] if key[0] in site.plugins else key:
        value = getattr(value, part)
    return value


def _assert_faithful(written: Any, loaded: Any, base_dir: Path) -> None:
    """``loaded`` is what TOML's ``written`` says, in a type that holds it without loss."""
    if isinstance(loaded, bool):
        assert written is loaded
    elif isinstance(loaded, int | float | Decimal):
        assert type(written) in {int, float}, (written, loaded)
        assert isinstance(loaded, float | Decimal) or type(written) is int, (written, loaded)
        assert written == loaded
    elif isinstance(loaded, enum.Enum):
        assert written == loaded.value
    elif isinstance(loaded, str):
        assert written == loaded or (isinstance(written, date | time) and written.isoformat() == loaded)
    elif isinstance(loaded, Path):
        assert isinstance(written, str)
        assert loaded == base_dir / written
    elif isinstance(loaded, datetime | time):
        assert written == loaded or isinstance(written, str)
    elif isinstance(loaded, tuple):
        assert isinstance(written, list)
        assert len(written) == len(loaded)
        for item, got in zip(written, loaded, strict=True):
            _assert_faithful(item, got, base_dir)
    elif isinstance(loaded, dict):
        assert isinstance(written, dict)
        keys = {key.value if isinstance(key, enum.Enum) else key: value for key, value in loaded.items()}
        assert set(keys) == set(written), (written, loaded)
        for name, item in written.items():
            _assert_faithful(item, keys[name], base_dir)
    elif isinstance(loaded, BaseModel):
        assert isinstance(written, dict)
        for name, item in written.items():
            _assert_faithful(item, getattr(loaded, name), base_dir)
    else:
        assert str(loaded) == written, (written, loaded)


@FUZZ
@given(key=st.sampled_from(KEYS), value=_values)
def test_any_value_at_any_key_loads_as_written_or_is_refused(
    base: tuple[Path, str, AdapterCatalog], key: tuple[str, ...], value: Any
) -> None:
    path, text, catalog = base
    document = tomllib.loads(text)
    table = document["sites"]["t"]
    for part in key[:-1]:
        table = table.setdefault(part, {})
    table[key[-1]] = value
    path.write_text(tomli_w.dumps(document), encoding="utf-8")
    site = _load(path, catalog)
    if site is not None:
        _assert_faithful(value, _loaded(site, key), path.parent)


@FUZZ
@given(data=st.data())
def test_damaged_text_is_loaded_or_refused_in_one_line(
    base: tuple[Path, str, AdapterCatalog], data: st.DataObject
) -> None:
    path, text, catalog = base
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, min(len(text), start + 8)))
    junk = data.draw(st.text(st.characters(codec="utf-8"), max_size=6) | st.sampled_from(['"', "[", "=", "\n", "\\"]))
    path.write_text(text[:start] + junk + text[end:], encoding="utf-8")
    _load(path, catalog)
