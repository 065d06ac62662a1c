"""A secret setting written literally in ``sites.toml`` (not as ``${VAR}``) is never shown by a configuration
error, whatever its type or validity, in any plugin: every ``SecretStr`` field of a config model, nested ones too.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, ClassVar

import pytest
from pydantic import AfterValidator, Field, SecretStr

from cartera.core.adapters import PluginConfig, SmsGateway
from cartera.core.config import load_site
from cartera.core.errors import ConfigError
from cartera.core.hooks import Hooks, load_plugins
from cartera.core.hookspecs import hookimpl
from cartera.core.models import CheckResult, SmsMessage, SmsSubmitResult
from cartera.core.registry import AdapterRegistry
from tests.conftest import run_site, write_sites

pytestmark = pytest.mark.abuse

VALID_TOKEN = "valid-literal-token-0123456789"


def site_with(directory: Path, kind: str, section: str) -> Path:
    """Site ``t`` whose ``kind`` table is ``section`` (its header included)."""
    config = write_sites(directory)
    text = config.read_text(encoding="utf-8")
    start = text.index(f"[sites.t.{kind}]")
    following = [text.find(f"\n[sites.t.{other}]", start) for other in ("recording", "sms", "crm_sync")]
    end = min((at + 1 for at in following if at > start), default=len(text))
    config.write_text(text[:start] + section.strip() + "\n\n" + text[end:], encoding="utf-8")
    return config


HTTP = """
[sites.t.crm_sync]
plugin = "http"
[sites.t.crm_sync.creditors.BCO]
token = "{valid}"
[sites.t.crm_sync.creditors.OTRO]
{setting}
"""
SMPP = """
[sites.t.sms]
plugin = "smpp"
host = "127.0.0.1"
system_id = "cartera"
source_addr = "COBRANZA"
{setting}
"""
KANNEL = """
[sites.t.sms]
plugin = "kannel"
smsbox_url = "http://127.0.0.1:13013"
username = "cartera"
{setting}
"""
AMI = """
[sites.t.dialer]
plugin = "asterisk_ami"
username = "cartera"
queue = "cobranza"
{setting}
"""
S3 = """
[sites.t.recording]
plugin = "s3"
bucket = "grabaciones"
endpoint_url = "http://127.0.0.1:7480"
{setting}
"""

#: (kind, table, the setting as written, the text that must not come out)
CASES = [
    ("crm_sync", HTTP, 'token = "LiteralTok-abcdefghijkl"', "LiteralTok-abcdefghijkl"),  # too short
    ("crm_sync", HTTP, "token = 12345678901234567890123456", "12345678901234567890123456"),  # not text
    ("crm_sync", HTTP, f'token = "{VALID_TOKEN}x"\nwebhook_token = 123456789', "123456789"),
    ("crm_sync", HTTP, f'token = "{VALID_TOKEN}y"\nwebhook_token = 3.14159265', "3.14159265"),
    ("crm_sync", HTTP, f'token = "{VALID_TOKEN}z"\nwebhook_token = 2026-11-23T08:00:00', "2026-11-23"),
    ("crm_sync", HTTP, 'token = ["ListedTok-0123456789abcdef"]', "ListedTok-0123456789abcdef"),
    ("sms", SMPP, "password = 87654321", "87654321"),
    ("sms", KANNEL, "password = 98765432", "98765432"),
    ("sms", KANNEL, 'password = "kannel-pass-7731"\ncallback_token = "not url safe: kb81"', "not url safe: kb81"),
    ("sms", KANNEL, 'password = "kannel-pass-7732"\nstatus_password = true', "True"),
    ("dialer", AMI, "secret = 55501234", "55501234"),
    ("dialer", AMI, "secret = 12:34:56", "12:34:56"),
    ("recording", S3, 'access_key_id = "AKIDLITERAL0001"\nsecret_access_key = 44409876', "44409876"),
    ("recording", S3, "access_key_id = 77712345", "77712345"),
]


@pytest.mark.parametrize("case", CASES)
def test_a_literal_secret_setting_is_never_shown_by_a_config_error(
    hooks: Hooks, tmp_path: Path, case: tuple[str, str, str, str]
) -> None:
    kind, table, setting, hidden = case
    config = site_with(tmp_path, kind, table.format(valid=VALID_TOKEN, setting=setting))
    with pytest.raises(ConfigError) as raised:
        load_site(config, "t", hooks.collect_adapters())
    message = str(raised.value)
    name = setting.splitlines()[-1].split(" = ")[0]
    line = max(i for i, row in enumerate(config.read_text().splitlines(), 1) if row.startswith(f"{name} = "))
    assert re.match(rf"{re.escape(str(config))}:{line}: site 't', key '{kind}\.[^']*{name}': ", message), message
    assert hidden not in message, message


def test_the_command_line_does_not_show_a_literal_secret_either(tmp_path: Path) -> None:
    config = site_with(tmp_path, "sms", SMPP.format(setting="password = 87654321"))
    result = run_site(config, "check")
    assert result.returncode == 2, result.stderr
    assert "key 'sms.password'" in result.stderr
    assert "87654321" not in result.stdout + result.stderr


def test_other_settings_still_show_what_they_got(hooks: Hooks, tmp_path: Path) -> None:
    config = site_with(tmp_path, "sms", SMPP.format(setting='password = "p4ss-ok"\nport = "2775"'))
    with pytest.raises(ConfigError, match=r"key 'sms\.port': Input should be a valid integer \(got '2775'\)"):
        load_site(config, "t", hooks.collect_adapters())


def _hex(value: SecretStr) -> SecretStr:
    if not re.fullmatch(r"[0-9a-f]+", value.get_secret_value()):
        raise ValueError(f"{value.get_secret_value()!r} is not hexadecimal")  # a careless plugin's message
    return value


class VaultAccount(PluginConfig):
    key: SecretStr


class VaultBackup(PluginConfig):
    host: str
    pin: SecretStr | None = None


class VaultConfig(PluginConfig):
    """A third-party plugin's secrets: in nested tables, arrays of tables, behind its own validator."""

    accounts: dict[str, VaultAccount] = Field(default_factory=dict)
    backups: list[VaultBackup] = Field(default_factory=list)
    signing: Annotated[SecretStr, AfterValidator(_hex)] | None = None


class VaultGateway(SmsGateway[VaultConfig]):
    name: ClassVar[str] = "vault"
    config_model: ClassVar[type[VaultConfig]] = VaultConfig

    def check(self) -> CheckResult:
        return CheckResult(True, "ok")

    def send(self, message: SmsMessage) -> SmsSubmitResult:
        raise NotImplementedError


class VaultPlugin:
    @hookimpl
    def cartera_register_sms_gateways(self, register: AdapterRegistry[SmsGateway[VaultConfig]]) -> None:
        register.add(VaultGateway)


@pytest.mark.parametrize(
    ("section", "key", "hidden"),
    [
        ("[sites.t.sms.accounts.main]\nkey = 314159265", "sms.accounts.main.key", "314159265"),
        ('[[sites.t.sms.backups]]\nhost = "b1"\npin = 27182818', "sms.backups.pin", "27182818"),
        ('signing = "Not-Hex-Signing-Key-0042"', "sms.signing", "Not-Hex-Signing-Key-0042"),
        ("signing = 16180339", "sms.signing", "16180339"),
    ],
)
def test_any_plugins_secret_settings_are_never_shown_wherever_they_sit(
    tmp_path: Path, section: str, key: str, hidden: str
) -> None:
    config = site_with(tmp_path, "sms", f'[sites.t.sms]\nplugin = "vault"\n{section}')
    with pytest.raises(ConfigError) as raised:
        load_site(config, "t", load_plugins(entry_points=False, extra=[VaultPlugin()]).collect_adapters())
    message = str(raised.value)
    assert f"site 't', key '{key}': " in message, message
    assert hidden not in message, message
