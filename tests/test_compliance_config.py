"""Compliance settings in sites.toml: a pack is always selected, what it needs is given, the law is never loosened."""

from __future__ import annotations

from pathlib import Path

import pytest

from cartera.contact.compliance import packs
from cartera.core.config import load_site
from cartera.core.errors import ConfigError
from cartera.core.hooks import Hooks
from tests.conftest import write_sites

SECTION = """[sites.t.compliance]
authorised_channels = ["call", "sms"]
contact_window = {{ start = "07:00", end = "19:00", days = ["mon", "tue", "wed", "thu", "fri"] }}
"""


def with_compliance(tmp_path: Path, body: str, country: str = "CO") -> Path:
    path = write_sites(tmp_path)
    text = path.read_text().replace(SECTION.replace("{{", "{").replace("}}", "}"), body)
    path.write_text(text.replace('country = "CO"', f'country = "{country}"'))
    return path


def error(hooks: Hooks, path: Path) -> str:
    with pytest.raises(ConfigError) as raised:
        load_site(path, "t", hooks.collect_adapters())
    return str(raised.value)


def test_every_pack_cites_its_sources() -> None:
    assert set(packs.pack_ids()) >= {"co", "mx", "pe", "cl", "us", "us-ma"}
    for pack_id in packs.pack_ids():
        pack = packs.load_pack(pack_id)
        assert pack.rules
        for rule in pack.rules:
            assert rule.id, (pack_id, rule)
            assert rule.summary, rule.id
            assert rule.source is not None, rule.id
            assert all((rule.source.law, rule.source.article, rule.source.date)), rule.id


def test_the_country_pack_is_the_default_and_an_explicit_one_wins(hooks: Hooks, tmp_path: Path) -> None:
    site = load_site(write_sites(tmp_path), "t", hooks.collect_adapters())
    assert site.section.compliance.law_pack is None  # Colombia's pack, from the site's country
    path = with_compliance(tmp_path, '[sites.t.compliance]\nlaw_pack = "us-ma"\n', country="US")
    assert load_site(path, "t", hooks.collect_adapters()).section.compliance.law_pack == "us-ma"


def test_a_country_without_a_pack_must_name_one(hooks: Hooks, tmp_path: Path) -> None:
    message = error(hooks, with_compliance(tmp_path, "[sites.t.compliance]\n", country="EC"))
    assert "key 'compliance.law_pack': no law pack for country 'EC'" in message
    assert "co, " in message


def test_unknown_pack_is_named_with_its_line(hooks: Hooks, tmp_path: Path) -> None:
    path = with_compliance(tmp_path, '[sites.t.compliance]\nlaw_pack = "atlantis"\nauthorised_channels = ["call"]\n')
    message = error(hooks, path)
    assert "sites.toml:" in message
    assert "key 'compliance.law_pack': unknown law pack 'atlantis'" in message


def test_colombia_needs_the_channels_debtors_authorised(hooks: Hooks, tmp_path: Path) -> None:
    message = error(hooks, with_compliance(tmp_path, "[sites.t.compliance]\n"))
    assert "key 'compliance.authorised_channels'" in message
    assert "Ley 2300 de 2023, art. 3" in message


def test_a_window_wider_than_the_law_is_refused(hooks: Hooks, tmp_path: Path) -> None:
    body = (
        '[sites.t.compliance]\nauthorised_channels = ["call"]\n'
        'contact_window = { start = "07:00", end = "19:00", days = ["mon", "sat"] }\n'
    )
    message = error(hooks, with_compliance(tmp_path, body))
    assert "key 'compliance.contact_window'" in message
    assert "hours on sat 07:00-19:00 are looser (the law: 08:00-15:00)" in message
    assert "co.ley2300.art3.horario (Ley 2300 de 2023, art. 3)" in message


def test_site_rules_may_be_stricter_never_looser(hooks: Hooks, tmp_path: Path) -> None:
    stricter = (
        "[sites.t.compliance]\n"
        "[[sites.t.compliance.rules]]\n"
        'kind = "window"\nhours = { "mon-fri" = "09:00-18:00", "sat" = "09:00-12:00" }\n'
        "[[sites.t.compliance.rules]]\n"
        'kind = "frequency"\nchannels = ["call"]\nmax = 1\ndays = 7\n'
    )
    site = load_site(with_compliance(tmp_path, stricter, country="CL"), "t", hooks.collect_adapters())
    assert len(site.section.compliance.rules) == 2
    looser = (
        "[sites.t.compliance]\n"
        "[[sites.t.compliance.rules]]\n"
        'kind = "frequency"\nchannels = ["call"]\nmax = 3\ndays = 7\n'
    )
    message = error(hooks, with_compliance(tmp_path, looser, country="CL"))
    assert "key 'compliance.rules'" in message
    assert "site.rules.1: max 3 contacts in 7 days is looser (the law: 1)" in message
    sunday = '[sites.t.compliance]\n[[sites.t.compliance.rules]]\nkind = "window"\nhours = { "sun" = "10:00-12:00" }\n'
    assert "hours on sun 10:00-12:00 are looser (the law: closed)" in error(
        hooks, with_compliance(tmp_path, sunday, country="PE")
    )


def test_bad_rule_values_are_named(hooks: Hooks, tmp_path: Path) -> None:
    body = '[sites.t.compliance]\n[[sites.t.compliance.rules]]\nkind = "window"\nhours = { "mon-fry" = "9-5" }\n'
    message = error(hooks, with_compliance(tmp_path, body, country="MX"))
    assert "key 'compliance.rules.window.hours'" in message
    assert "'mon-fry' is not a day or a range of days" in message


def test_test_numbers_must_be_e164(hooks: Hooks, tmp_path: Path) -> None:
    good = '[sites.t.compliance]\nauthorised_channels = ["call"]\ntest_numbers = ["+573001234567"]\n'
    assert load_site(with_compliance(tmp_path, good), "t", hooks.collect_adapters()).section.compliance.test_numbers
    bad = '[sites.t.compliance]\nauthorised_channels = ["call"]\ntest_numbers = ["300 123 4567"]\n'
    message = error(hooks, with_compliance(tmp_path, bad))
    assert "key 'compliance.test_numbers'" in message
    assert "'300 123 4567' is not a valid number in E.164 form" in message


def test_portfolio_overrides(hooks: Hooks, tmp_path: Path) -> None:
    body = (
        '[sites.t.compliance]\nauthorised_channels = ["call", "sms"]\n'
        '[sites.t.compliance.portfolios."BANCO/SANTIAGO"]\nlaw_pack = "cl"\n'
    )
    site = load_site(with_compliance(tmp_path, body), "t", hooks.collect_adapters())
    assert site.section.compliance.portfolios["BANCO/SANTIAGO"].law_pack == "cl"
    bad = (
        '[sites.t.compliance]\nauthorised_channels = ["call"]\n'
        '[sites.t.compliance.portfolios.TARJETAS]\nlaw_pack = "cl"\n'
    )
    assert "portfolios are named 'CREDITOR/PORTFOLIO'" in error(hooks, with_compliance(tmp_path, bad))
