"""A mistyped ``${ENV}`` reference is a configuration error, never the setting's value (round 19 I, F1).

``${CRM_WORKSPACE_API-TOKEN}`` (a hyphen), ``${ CRM_WORKSPACE_API_TOKEN }`` (blanks) or ``$CRM_WORKSPACE_API_TOKEN``
(shell style) were kept as written: a workspace integration's token then *was* that text, readable by whoever reads
the shared sites.toml, and the events API streamed every creditor's debtors to it while ``check`` passed.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from cartera.core.config import load_site
from cartera.core.errors import ConfigError
from cartera.core.hooks import Hooks
from tests.cli_in_process import run_cli
from tests.conftest import write_sites

TOKEN = "s3cr3t-crm-token-0123456789abcdef"
VALID_FORM = "write ${NAME}"


def _site_with(directory: Path, table: str, key: str, written: str) -> Path:
    """Site ``t`` with ``key = "written"`` appended in table ``[sites.t.TABLE]``."""
    return write_sites(directory, extra=f'\n[sites.t.{table}]\n{key} = "{written}"\n')


def _load_error(hooks: Hooks, path: Path) -> str:
    with pytest.raises(ConfigError) as raised:
        load_site(path, "t", hooks.collect_adapters())
    return str(raised.value)


def _check_error(path: Path) -> str:
    result = run_cli(["--config", str(path), "--site", "t", "check"], cwd=path.parent)
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    return result.stderr


def _line(path: Path, needle: str) -> int:
    return next(i for i, row in enumerate(path.read_text().splitlines(), 1) if needle in row)


MALFORMED = "a malformed environment variable reference"
LITERAL = "a secret written as text beginning with '$'"
WRITTEN = [
    ("${CRM_WORKSPACE_API-TOKEN}", MALFORMED),  # a hyphen in the name
    ("${ CRM_WORKSPACE_API_TOKEN }", MALFORMED),  # blanks inside the braces
    ("${CRM_WORKSPACE_API_TOKEN", MALFORMED),  # unclosed
    ("${1CRM_WORKSPACE_API_TOKEN}", MALFORMED),  # begins with a digit
    ("${}-crm-workspace-token-0000", MALFORMED),  # empty
    ("prefix-${CRM WORKSPACE}-0123456789", MALFORMED),  # inside a longer text
    ("$CRM_WORKSPACE_API_TOKEN", LITERAL),  # shell style: 24 characters, long enough for a token
    ("$crm_workspace_api_token_0000", LITERAL),
    ("$$CRM_WORKSPACE_API_TOKEN", LITERAL),
]


@pytest.mark.abuse
@pytest.mark.parametrize(("written", "refusal"), WRITTEN)
def test_a_mistyped_reference_in_an_integration_token_is_refused_by_check_and_the_loader(
    hooks: Hooks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, written: str, refusal: str
) -> None:
    monkeypatch.setenv("CRM_WORKSPACE_API_TOKEN", TOKEN)
    path = _site_with(tmp_path, "workspace.integrations.crm", "token", written)
    where = f"{path}:{_line(path, 'token = ')}: site 't', key 'workspace.integrations.crm.token': {refusal}"
    for message in (_load_error(hooks, path), _check_error(path)):
        assert where in message, message
        assert VALID_FORM in message, message
        assert written not in message, message
        assert TOKEN not in message, message


@pytest.mark.abuse
@pytest.mark.parametrize("written", ["${CARTERA_DB-PASSWORD}", "${ CARTERA_DB_PASSWORD }", "${CARTERA_DB_PASSWORD"])
def test_a_malformed_reference_in_any_setting_is_refused(hooks: Hooks, tmp_path: Path, written: str) -> None:
    """Not only secrets: a URL's password, a plain setting (a ``${`` is never text the node keeps)."""
    path = write_sites(tmp_path, database=f"postgresql+psycopg://cartera:{written}@127.0.0.1/x")
    message = _load_error(hooks, path)
    assert f"{path}:{_line(path, 'database = ')}: site 't', key 'database': " in message, message
    assert MALFORMED in message, message
    assert VALID_FORM in message, message
    path.write_text(path.read_text().replace(f'database = "postgresql+psycopg://cartera:{written}@127.0.0.1/x"', ""))
    path.write_text(path.read_text().replace("[sites.t.web]", f'[sites.t.web]\npublic_url = "{written}"', 1))
    message = _load_error(hooks, path)
    assert "key 'web.public_url': a malformed environment variable reference" in message, message


@pytest.mark.abuse
def test_a_plugin_secret_and_a_url_password_beginning_with_a_dollar_are_refused(hooks: Hooks, tmp_path: Path) -> None:
    path = write_sites(tmp_path, database="postgresql+psycopg://cartera:$CARTERA_DB_PASSWORD@127.0.0.1/x")
    message = _load_error(hooks, path)
    assert "key 'database': the URL's password: a secret written as text beginning with '$'" in message, message
    assert "$CARTERA_DB_PASSWORD" not in message
    path = write_sites(tmp_path)
    text = path.read_text()
    start, end = text.index("[sites.t.dialer]"), text.index("[sites.t.recording]")
    path.write_text(
        text[:start] + '[sites.t.dialer]\nplugin = "asterisk_ami"\nhost = "127.0.0.1"\nport = 5038\n'
        'username = "cartera"\nsecret = "$CARTERA_AMI_SECRET"\nqueue = "cobranza"\n\n' + text[end:]
    )
    where = f"{path}:{_line(path, 'secret = ')}: site 't', key 'dialer.secret': "
    for message in (_load_error(hooks, path), _check_error(path)):
        assert where in message, message
        assert LITERAL in message, message
        assert "$CARTERA_AMI_SECRET" not in message, message


def test_valid_references_and_a_currency_sign_before_a_template_expression_load(
    hooks: Hooks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``${NAME}`` is substituted; a secret whose value (from the environment) begins with ``$`` is fine; an SMS
    template's ``${{ amount }}`` is a dollar sign before Jinja2's expression, not a reference."""
    monkeypatch.setenv("CRM_WORKSPACE_API_TOKEN", "$" + TOKEN)
    path = _site_with(tmp_path, "workspace.integrations.crm", "token", "${CRM_WORKSPACE_API_TOKEN}")
    path.write_text(
        path.read_text()
        + '\n[sites.t.sms_templates.default]\nreminder = "Saldo ${{ balance | money }} {{ currency }}. BAJA"\n'
    )
    site = load_site(path, "t", hooks.collect_adapters())
    assert site.section.workspace.integrations["crm"].token.get_secret_value() == "$" + TOKEN
