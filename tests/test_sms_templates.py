"""SMS templates: sandboxed rendering per portfolio, config errors naming the key and line, the campaign's
reminder, and the CLI's preview and batch (count, segments, cost, the gate's refusals) run as real processes."""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa

from cartera.contact.sms_templates import SmsPricing, SmsTemplates, TemplateProblem, check_template, money
from cartera.core.errors import ConfigError
from cartera.core.hooks import load_plugins
from cartera.core.models import InboundSms
from cartera.core.store.schema import Account
from cartera.node import Node
from tests.conftest import call_once_unanswered, write_portfolio, write_sites
from tests.test_cli import assert_one_line_error, cartera

REMINDER = (
    "Hola {{ first_name }}, su cuenta {{ account }} con {{ creditor }} tiene un saldo de "
    "${{ balance | money }} {{ currency }}. Responda BAJA para no recibir más mensajes."
)
TEMPLATES = f"""
[sites.t.sms_pricing]
cost_per_segment = 0.0125
currency = "USD"

[sites.t.sms_templates.default]
reminder = "{REMINDER}"

[sites.t.sms_templates."BANCO/TARJETAS"]
aviso = "Sr(a). {{{{ name }}}}: su cuota de {{{{ portfolio }}}} vence hoy."
"""
ROWS = [
    "BCO-1;Ana Gómez;300 123 4567;;1.250.000,50;COP",
    "BCO-2;Luis Pérez;310 765 4321;;980.000,00;COP",
]


def site_with_templates(tmp_path: Path, extra: str = TEMPLATES) -> Path:
    path = write_sites(tmp_path, extra=extra)
    write_portfolio(tmp_path / "inbox", ROWS)
    return path


def _account(node: Node, ref: str) -> Account:
    with node.db.session() as session:
        account = session.scalars(sa.select(Account).where(Account.ref == ref)).one()
        _ = (account.portfolio.creditor.code, account.debtor.name)
        session.expunge_all()
        return account


# --- rendering -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("amount", "text"),
    [("1250000.50", "1.250.000,50"), ("980000", "980.000"), ("0.5", "0,50"), ("12", "12"), ("-1500", "-1.500")],
)
def test_money_reads_as_debtors_read_amounts(amount: str, text: str) -> None:
    assert money(Decimal(amount)) == text


def test_a_template_is_filled_with_the_accounts_fields(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    node = open_node(site_with_templates(tmp_path))
    node.creditor_sync().run_once()
    rendered = node.texts.render_sms("reminder", "BCO-1")
    assert rendered is not None
    assert rendered.text == (
        "Hola Ana, su cuenta BCO-1 con BANCO tiene un saldo de $1.250.000,50 COP. "
        "Responda BAJA para no recibir más mensajes."
    )
    assert (rendered.encoding, rendered.segments) == ("UCS-2", 2)  # "á" is not in GSM 03.38
    assert (rendered.cost, rendered.currency) == (Decimal("0.0250"), "USD")
    aviso = node.texts.render_sms("aviso", "BCO-2")
    assert aviso is not None
    assert aviso.text == "Sr(a). Luis Pérez: su cuota de TARJETAS vence hoy."
    assert (aviso.encoding, aviso.segments, aviso.cost) == ("GSM-7", 1, Decimal("0.0125"))
    assert node.texts.render_sms("no-such-template", "BCO-1") is None


def test_the_portfolios_own_template_wins_over_the_default(tmp_path: Path, open_node: Callable[..., Node]) -> None:
    node = open_node(site_with_templates(tmp_path))
    node.creditor_sync().run_once()
    account = _account(node, "BCO-1")
    sources = {
        "default": {"t": "default"},
        "TARJETAS": {"t": "by code"},
        "BANCO/TARJETAS": {"t": "by creditor and code"},
    }
    rendered = [
        SmsTemplates({key: sources[key] for key in keys}, SmsPricing()).render("t", account)
        for keys in (["default"], ["default", "TARJETAS"], ["default", "TARJETAS", "BANCO/TARJETAS"])
    ]
    assert [r.text if r else None for r in rendered] == ["default", "by code", "by creditor and code"]
    assert SmsTemplates({"OTRO": {"t": "other"}}, SmsPricing()).render("t", account) is None


@pytest.mark.parametrize(
    "source",
    [
        "{{ name.__class__.__mro__[1].__subclasses__() }}",
        "{{ account.__class__ }}",
        "{{ name.format.__globals__ }}",
        "{{ balance.__class__.__init__.__globals__ }}",
    ],
)
def test_the_sandbox_refuses_python_internals(source: str, tmp_path: Path, open_node: Callable[..., Node]) -> None:
    node = open_node(site_with_templates(tmp_path))
    node.creditor_sync().run_once()
    check_template(source)  # only plain field names: it parses and passes the config check
    templates = SmsTemplates({"default": {"evil": source}}, SmsPricing())
    with pytest.raises(TemplateProblem, match=r"evil.*BCO-1") as caught:
        templates.render("evil", _account(node, "BCO-1"))
    assert "unsafe" in str(caught.value) or "undefined" in str(caught.value)


@pytest.mark.parametrize(
    ("template", "fragments"),
    [
        ('"Hola {{ name }"', ["template syntax error at line 1 of the template", "unexpected '}'"]),
        ('"""Hola\n{% if balance %}\nsaldo"""', ["line 2 of the template", "endif"]),
        ('"Hola {{ saldo }}"', ["unknown template field 'saldo'", "first_name"]),
        ('"  "', ["the template is empty"]),
    ],
)
def test_a_bad_template_is_a_config_error_naming_key_and_line(
    template: str, fragments: list[str], tmp_path: Path
) -> None:
    path = write_sites(tmp_path, extra=f"\n[sites.t.sms_templates.TARJETAS]\naviso = {template}\n")
    line = path.read_text().splitlines().index("aviso = " + template.splitlines()[0]) + 1
    with pytest.raises(ConfigError) as caught:
        Node.open(path, "t", load_plugins(entry_points=False))
    message = str(caught.value)
    assert message.startswith(f"{path}:{line}: site 't', key 'sms_templates.TARJETAS.aviso': ")
    for fragment in fragments:
        assert fragment in message


def test_a_negative_price_is_a_config_error(tmp_path: Path) -> None:
    path = write_sites(tmp_path, extra="\n[sites.t.sms_pricing]\ncost_per_segment = -1\n")
    with pytest.raises(ConfigError, match=r"key 'sms_pricing\.cost_per_segment'"):
        Node.open(path, "t", load_plugins(entry_points=False))


def test_an_unreached_debtor_gets_the_portfolios_reminder_template(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    campaign = call_once_unanswered(site_with_templates(tmp_path), open_node, ROWS[0], "+573001234567")
    assert campaign.tick() == 0
    lines = (tmp_path / "sms" / "outbox.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["text"] for line in lines] == [
        "Hola Ana, su cuenta BCO-1 con BANCO tiene un saldo de $1.250.000,50 COP. "
        "Responda BAJA para no recibir más mensajes."
    ]


# --- the command line ----------------------------------------------------------------------------------


def test_preview_shows_text_encoding_segments_and_cost(tmp_path: Path) -> None:
    path = site_with_templates(tmp_path)
    assert cartera(path, "--site", "t", "import", str(tmp_path / "inbox" / "asignacion.csv")).returncode == 0
    shown = cartera(path, "--site", "t", "sms-template", "preview", "--account", "BCO-2")
    assert shown.returncode == 0, shown.stderr
    text = (
        "Hola Luis, su cuenta BCO-2 con BANCO tiene un saldo de $980.000 COP. "
        "Responda BAJA para no recibir más mensajes."
    )
    assert shown.stdout.splitlines() == [
        "template 'reminder' for account BCO-2:",
        f"  {text}",
        f"{len(text)} characters, UCS-2, 2 segment(s), cost 0.0250 USD",
    ]
    missing = cartera(path, "--site", "t", "sms-template", "preview", "--account", "BCO-2", "--template", "x")
    assert_one_line_error(missing, 2, "no SMS template 'x' for account 'BCO-2'", "aviso, reminder")
    unknown = cartera(path, "--site", "t", "sms-template", "preview", "--account", "NOPE")
    assert_one_line_error(unknown, 1, "no account 'NOPE'")


@pytest.mark.abuse
def test_a_csv_name_with_control_characters_is_quarantined_and_stored_ones_never_reach_the_terminal(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    path = site_with_templates(tmp_path, extra=TEMPLATES.replace(REMINDER, "Hola {{ name }}"))
    write_portfolio(tmp_path / "inbox", [*ROWS, "BCO-3;Nul\x00Name;311 765 4321;;10,00;COP"])
    imported = cartera(path, "--site", "t", "import", str(tmp_path / "inbox" / "asignacion.csv"))
    assert imported.returncode == 0, imported.stderr
    assert "\x00" not in imported.stdout + imported.stderr
    assert "'Nul\\x00Name'" in imported.stdout + imported.stderr
    assert_one_line_error(
        cartera(path, "--site", "t", "sms-template", "preview", "--account", "BCO-3"), 1, "no account 'BCO-3'"
    )
    hostile = "Ana\x1b]52;c;aGk=\x07\x1b[31m\u202e\x9b"
    with sa.create_engine(f"sqlite:///{tmp_path / 'var' / 't.db'}").begin() as connection:
        connection.execute(sa.text("UPDATE debtors SET name = :name"), {"name": hostile})
    shown = cartera(path, "--site", "t", "sms-template", "preview", "--account", "BCO-2")
    output = shown.stdout + shown.stderr
    assert not any(char in output for char in "\x00\x07\x1b\x9b\u202e"), output
    assert repr(hostile)[1:-1] in output
    node = open_node(path)
    with pytest.raises(TemplateProblem, match="control character"):
        node.texts.render_sms("reminder", "BCO-2")


def test_batch_shows_its_cost_and_refusals_then_sends_through_the_gate(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    path = site_with_templates(tmp_path)
    node = open_node(path)
    node.creditor_sync().run_once()
    node.texts.on_inbound(InboundSms("+573107654321", "ALTO", node.clock.now(), "mo-1"))  # BCO-2 opts out
    node.close()
    outbox = tmp_path / "sms" / "outbox.jsonl"

    dry = cartera(path, "--site", "t", "sms-batch", "--template", "aviso", "--portfolio", "BANCO/TARJETAS", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert lines[0] == "batch 'aviso' for portfolio BANCO/TARJETAS: 2 active accounts"
    assert lines[1] == "  to send: 1 messages, 1 segments (1 UCS-2), cost 0.0125 USD"  # "ó" is not GSM-7
    assert lines[2].startswith("  refused by the compliance gate at ")
    assert lines[2].endswith(": 1 (debtor_opt_out: 1)")
    assert not outbox.exists() or outbox.read_text() == ""

    sent = cartera(path, "--site", "t", "sms-batch", "--template", "aviso", "--portfolio", "TARJETAS")
    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.splitlines()[-1] == "sent: 1 submitted, 0 failed, 0 refused by the gate"
    texts = [json.loads(line) for line in outbox.read_text(encoding="utf-8").splitlines()]
    assert [(t["to"], t["text"]) for t in texts] == [
        ("+573001234567", "Sr(a). Ana Gómez: su cuota de TARJETAS vence hoy.")
    ]

    wrong = cartera(path, "--site", "t", "sms-batch", "--template", "aviso", "--portfolio", "HIPOTECAS", "--dry-run")
    assert_one_line_error(wrong, 2, "no portfolio 'HIPOTECAS'", "known: BANCO/TARJETAS")
    none = cartera(path, "--site", "t", "sms-batch", "--template", "nada", "--portfolio", "TARJETAS", "--dry-run")
    assert_one_line_error(none, 2, "no SMS template 'nada' for portfolio BANCO/TARJETAS")
