"""Each creditor of the ``http`` plugin holds secrets of its own: a token (or webhook token) two creditors share
would let one act, or take deliveries, as the other, so configuration refuses it, naming both keys, never the
secret."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cartera.core.config import load_site
from cartera.core.errors import ConfigError
from cartera.core.hooks import Hooks
from tests.conftest import run_site, write_sites

pytestmark = pytest.mark.abuse

SHARED = "shared-token-0123456789abcdef-Q7"
OTHER = "other-token-0123456789abcdef-W3"
THIRD = "third-token-0123456789abcdef-K5"


def http_site(directory: Path, creditors: str) -> Path:
    config = write_sites(directory)
    text = config.read_text(encoding="utf-8")
    section = '[sites.t.crm_sync]\nplugin = "http"\n' + creditors.strip() + "\n"
    config.write_text(text[: text.index("[sites.t.crm_sync]")] + section, encoding="utf-8")
    return config


def refusal(hooks: Hooks, config: Path) -> str:
    with pytest.raises(ConfigError) as raised:
        load_site(config, "t", hooks.collect_adapters())
    assert raised.value.exit_code == 2
    return str(raised.value)


def line_of(config: Path, table: str, key: str) -> int:
    lines = config.read_text().splitlines()
    start = lines.index(f"[sites.t.crm_sync.creditors.{table}]")
    return next(i for i, row in enumerate(lines[start:], start + 1) if row.startswith(f"{key} = "))


@pytest.mark.parametrize(
    ("creditors", "holders"),
    [
        (  # the finding: one ${VAR} given to two creditors
            """
[sites.t.crm_sync.creditors.BCO]
token = "${BCO_TOK}"
[sites.t.crm_sync.creditors.OTRO]
token = "${BCO_TOK}"
""",
            ("BCO.token", "OTRO.token"),
        ),
        (  # the same token written twice, through two variables
            f"""
[sites.t.crm_sync.creditors.BCO]
token = "${{BCO_TOK}}"
[sites.t.crm_sync.creditors.MEDIO]
token = "{OTHER}"
[sites.t.crm_sync.creditors.OTRO]
token = "${{OTRO_TOK}}"
""",
            ("BCO.token", "OTRO.token"),
        ),
        (  # one creditor's webhook would be sent the other's API token
            f"""
[sites.t.crm_sync.creditors.BCO]
token = "${{BCO_TOK}}"
[sites.t.crm_sync.creditors.OTRO]
token = "{OTHER}"
webhook_url = "https://crm.otro.example/hook"
webhook_token = "${{BCO_TOK}}"
""",
            ("BCO.token", "OTRO.webhook_token"),
        ),
        (  # and an API token of the other's webhook token
            f"""
[sites.t.crm_sync.creditors.BCO]
token = "{OTHER}"
webhook_url = "https://crm.bco.example/hook"
webhook_token = "${{BCO_TOK}}"
[sites.t.crm_sync.creditors.OTRO]
token = "${{BCO_TOK}}"
""",
            ("BCO.webhook_token", "OTRO.token"),
        ),
        (  # two webhooks sent the same token: each creditor could post to the other's as the node
            f"""
[sites.t.crm_sync.creditors.BCO]
token = "{OTHER}"
webhook_url = "https://crm.bco.example/hook"
webhook_token = "${{BCO_TOK}}"
[sites.t.crm_sync.creditors.OTRO]
token = "{THIRD}"
webhook_url = "https://crm.otro.example/hook"
webhook_token = "${{BCO_TOK}}"
""",
            ("BCO.webhook_token", "OTRO.webhook_token"),
        ),
    ],
)
def test_a_secret_two_creditors_share_is_refused_naming_both_keys_never_the_secret(
    hooks: Hooks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, creditors: str, holders: tuple[str, str]
) -> None:
    first, second = holders
    monkeypatch.setenv("BCO_TOK", SHARED)
    monkeypatch.setenv("OTRO_TOK", SHARED)
    config = http_site(tmp_path, creditors)
    message = refusal(hooks, config)
    table, key = second.split(".")
    where = rf"{re.escape(str(config))}:{line_of(config, table, key)}: site 't', key 'crm_sync\.creditors\.{second}': "
    assert re.match(where, message), message
    assert f"creditors.{first}" in message, message
    assert "its own" in message, message
    for part in (SHARED, SHARED[:8], SHARED[-8:]):
        assert part not in message, message


def test_a_creditors_own_token_may_also_be_its_webhook_token(hooks: Hooks, tmp_path: Path) -> None:
    config = http_site(
        tmp_path,
        f"""
[sites.t.crm_sync.creditors.BCO]
token = "{SHARED}"
webhook_url = "https://crm.bco.example/hook"
webhook_token = "{SHARED}"
[sites.t.crm_sync.creditors.OTRO]
token = "{OTHER}"
""",
    )
    settings = load_site(config, "t", hooks.collect_adapters()).plugins["crm_sync"].settings
    assert sorted(settings.creditors) == ["BCO", "OTRO"]  # type: ignore[attr-defined]


def test_check_exits_2_on_a_shared_token_and_never_prints_it(tmp_path: Path) -> None:
    config = http_site(
        tmp_path,
        """
[sites.t.crm_sync.creditors.BCO]
token = "${BCO_TOK}"
[sites.t.crm_sync.creditors.OTRO]
token = "${BCO_TOK}"
""",
    )
    result = run_site(config, "check", env={"BCO_TOK": SHARED})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "all checks passed" not in result.stdout
    assert "key 'crm_sync.creditors.OTRO.token'" in result.stderr
    assert "creditors.BCO.token" in result.stderr
    assert "Traceback" not in result.stderr
    assert SHARED not in result.stdout + result.stderr
