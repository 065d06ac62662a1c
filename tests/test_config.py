"""sites.toml validation: one clear line naming file, site, key (and line) for every kind of mistake."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from cartera.core.config import load_site
from cartera.core.errors import ConfigError
from cartera.core.hooks import Hooks
from cartera.core.logs import TextFormatter
from tests.cli_in_process import run_cli
from tests.conftest import run_site, write_sites


def _error(hooks: Hooks, path: Path, site: str = "t") -> str:
    with pytest.raises(ConfigError) as raised:
        load_site(path, site, hooks.collect_adapters())
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_valid_site_resolves_paths_against_the_config_directory(hooks: Hooks, sites_toml: Path) -> None:
    site = load_site(sites_toml, "t", hooks.collect_adapters())
    assert site.data_dir == sites_toml.parent / "var/t"
    assert site.database_url == f"sqlite:///{sites_toml.parent / 'var' / 't.db'}"
    assert set(site.plugins) == {"dialer", "recording", "sms", "crm_sync"}
    assert site.plugins["recording"].settings.path == sites_toml.parent / "archive"  # type: ignore[attr-defined]


def test_toml_syntax_error_names_line_and_column(hooks: Hooks, tmp_path: Path) -> None:
    path = tmp_path / "sites.toml"
    path.write_text('[sites.t]\ntimezone = "America/Bogota"\ncountry = \n')
    message = _error(hooks, path)
    assert message.startswith(f"{path}:3:")
    assert "TOML syntax error" in message


@pytest.mark.abuse
@pytest.mark.parametrize("nested", ["[" * 5000 + "]" * 5000, "{a=" * 5000 + "1" + "}" * 5000])
def test_a_value_nested_too_deeply_is_a_config_error_naming_file_and_line(
    hooks: Hooks, tmp_path: Path, nested: str
) -> None:
    """tomllib parses nested arrays and inline tables recursively: 5,000 levels raised a bare RecursionError."""
    path = tmp_path / "sites.toml"
    path.write_text(f'[sites.t]\ntimezone = "America/Bogota"\ncountry = "CO"\ndeep = {nested}\n')
    message = _error(hooks, path)
    assert message.startswith(f"{path}:4: ")
    assert "nested too deeply" in message
    assert len(message) < 300


@pytest.mark.abuse
def test_a_value_nested_deeper_than_a_setting_is_named_with_its_key(hooks: Hooks, tmp_path: Path) -> None:
    """300 levels parse, but validation's JSON parser stops at 200: its error echoed the whole site table."""
    path = tmp_path / "sites.toml"
    path.write_text(
        '[sites.t]\ntimezone = "America/Bogota"\ncountry = "CO"\n[sites.t.dialer]\nplugin = "simulator"\n'
        f"deep = {'[' * 300}{']' * 300}\n"
    )
    message = _error(hooks, path)
    assert message == (
        f"{path}:6: site 't', key 'dialer.deep': a value nested too deeply: more than 32 arrays or tables inside "
        "one another"
    )


@pytest.mark.abuse
def test_a_value_nested_too_deeply_over_many_lines_names_a_line_inside_it(tmp_path: Path) -> None:
    path = tmp_path / "sites.toml"
    path.write_text('[sites.t]\ntimezone = "America/Bogota"\ndeep = ' + "[\n" * 5000 + "]\n" * 5000)
    done = run_site(path, "check")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"error: {path}:")
    line = int(done.stderr.split(":")[2])
    assert 3 < line < 5003  # where the nesting gets too deep, inside the value
    assert "nested too deeply" in done.stderr
    assert "RecursionError" not in done.stderr


def test_unknown_site_lists_the_defined_ones(hooks: Hooks, sites_toml: Path) -> None:
    message = _error(hooks, sites_toml, site="bogota")
    assert "unknown site 'bogota'" in message
    assert "defined: t" in message


def test_unknown_plugin_names_key_line_and_known_plugins(hooks: Hooks, sites_toml: Path) -> None:
    text = sites_toml.read_text().replace('plugin = "simulator"', 'plugin = "asterisk_amy"')
    sites_toml.write_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "asterisk_amy" in row)
    message = _error(hooks, sites_toml)
    assert message.startswith(f"{sites_toml}:{line}: site 't', key 'dialer.plugin'")
    assert "unknown dialer plugin 'asterisk_amy'" in message
    assert "simulator" in message


def test_unknown_plugin_key_is_rejected_with_its_line(hooks: Hooks, sites_toml: Path) -> None:
    text = sites_toml.read_text().replace("seed = 7", "seed = 7\nring_timout = 30")
    sites_toml.write_text(text)
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "ring_timout" in row)
    assert _error(hooks, sites_toml).startswith(
        f"{sites_toml}:{line}: site 't', key 'dialer.ring_timout': unknown key ("
    )


def test_unknown_core_key_is_rejected(hooks: Hooks, sites_toml: Path) -> None:
    sites_toml.write_text(sites_toml.read_text().replace('country = "CO"', 'country = "CO"\ncountri = "MX"'))
    assert "key 'countri': unknown key" in _error(hooks, sites_toml)


def test_missing_key_is_named(hooks: Hooks, sites_toml: Path) -> None:
    sites_toml.write_text(sites_toml.read_text().replace('creditor = "BANCO"\n', ""))
    assert "site 't', key 'crm_sync.creditor': missing key" in _error(hooks, sites_toml)


def test_bad_timezone_is_named(hooks: Hooks, sites_toml: Path) -> None:
    sites_toml.write_text(sites_toml.read_text().replace("America/Bogota", "America/Bogata"))
    message = _error(hooks, sites_toml)
    assert "key 'timezone'" in message
    assert "unknown time zone 'America/Bogata'" in message
    assert message.count("America/Bogata") == 1


@pytest.mark.abuse
def test_a_timezone_too_long_for_a_file_name_is_named(hooks: Hooks, sites_toml: Path) -> None:
    """Red-team round 17 L1: ZoneInfo raised a raw OSError (ENAMETOOLONG) for a name over 255 characters."""
    text = sites_toml.read_text()
    sites_toml.write_text(text.replace("America/Bogota", "A" * 5000))
    line = next(i for i, row in enumerate(text.splitlines(), 1) if "America/Bogota" in row)
    message = _error(hooks, sites_toml)
    assert message.startswith(f"{sites_toml}:{line}: site 't', key 'timezone': unknown time zone 'AAAA"), message
    assert message.count("A" * 5000) == 1


def test_bad_clock_and_window_values_are_named(hooks: Hooks, sites_toml: Path) -> None:
    sites_toml.write_text(sites_toml.read_text().replace('end = "19:00"', 'end = "06:00"'))
    assert "key 'compliance.contact_window'" in _error(hooks, sites_toml)


def test_missing_env_secret_is_named_without_leaking_others(
    hooks: Hooks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CARTERA_TEST_DB_PASSWORD", raising=False)
    path = write_sites(tmp_path, database="postgresql+psycopg://cartera:${CARTERA_TEST_DB_PASSWORD}@127.0.0.1/x")
    message = _error(hooks, path)
    assert "key 'database': environment variable CARTERA_TEST_DB_PASSWORD is not set" in message


def test_env_secrets_are_substituted_and_masked_in_logs(
    hooks: Hooks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cr3t-Pa55word-for-test"
    monkeypatch.setenv("CARTERA_TEST_DB_PASSWORD", secret)
    path = write_sites(tmp_path, database="postgresql+psycopg://cartera:${CARTERA_TEST_DB_PASSWORD}@127.0.0.1/x")
    site = load_site(path, "t", hooks.collect_adapters())
    assert secret in site.database_url
    record = logging.LogRecord("cartera", logging.INFO, __file__, 1, "connecting to %s", (site.database_url,), None)
    line = TextFormatter().format(record)
    assert secret not in line
    assert "cartera:***@127.0.0.1" in line


def test_other_sites_are_not_validated_in_depth(hooks: Hooks, tmp_path: Path) -> None:
    path = write_sites(
        tmp_path,
        extra='\n[sites.other]\ntimezone = "Nowhere/City"\ncountry = "CO"\n'
        '[sites.other.dialer]\nplugin = "missing"\npassword = "${NOT_ON_THIS_NODE}"\n',
    )
    assert load_site(path, "t", hooks.collect_adapters()).name == "t"
    assert "site 'other', key 'dialer.password': environment variable NOT_ON_THIS_NODE is not set" in _error(
        hooks, path, site="other"
    )


def test_shipped_sites_toml_is_valid(hooks: Hooks) -> None:
    repo = Path(__file__).resolve().parent.parent
    site = load_site(repo / "sites.toml", "demo", hooks.collect_adapters())
    assert site.section.clock.mode == "simulated"
    assert set(site.plugins) == {"dialer", "recording", "sms", "crm_sync"}


def _line_of(text: str, needle: str) -> int:
    return next(i for i, row in enumerate(text.splitlines(), 1) if needle in row)


@pytest.mark.parametrize(
    ("old", "new", "key", "message"),
    [
        ("seed = 7", 'seed = 7\nagents = "12"', "dialer.agents", "Input should be a valid integer (got '12')"),
        ("port = ", "port = '18931' # was ", "web.port", "Input should be a valid integer (got '18931')"),
        ('portfolio = "TARJETAS"', 'portfolio = "TARJETAS"\nkeep_files = "false"', "crm_sync.keep_files", "boolean"),
        ("seed = 7", "seed = 7.0", "dialer.seed", "Input should be a valid integer (got 7.0)"),
        ("speed = 600", "speed = true", "clock.speed", "Input should be a valid number (got True)"),
        ("speed = 600", "speed = inf", "clock.speed", "Input should be a finite number"),
        ('country = "CO"', "country = 57", "country", "Input should be a valid string (got 57)"),
        ('data_dir = "var/t"', "data_dir = 2026-01-01", "data_dir", "a TOML date or time is no valid value here"),
        ("seed = 7", "seed = 7\nagents = 07:00:00", "dialer.agents", "valid integer (got '07:00:00')"),
        ('data_dir = "var/t"', 'data_dir = "/proc/cartera/var"', "data_dir", "create or write this directory: /proc:"),
        ('path = "archive"', 'path = "blocker/archive"', "recording.path", "blocker is not a directory"),
        ('outbox = "exports"', 'outbox = "blocker/exports"', "crm_sync.outbox", "blocker is not a directory"),
    ],
)
def test_values_must_have_their_toml_type_and_directories_be_creatable(
    hooks: Hooks, sites_toml: Path, *, old: str, new: str, key: str, message: str
) -> None:
    (sites_toml.parent / "blocker").write_text("a file, not a directory")
    text = sites_toml.read_text().replace(old, new, 1)
    sites_toml.write_text(text)
    line = _line_of(text, key.rsplit(".", 1)[-1] + " =")
    error = _error(hooks, sites_toml)
    assert error.startswith(f"{sites_toml}:{line}: site 't', key '{key}': ")
    assert message in error


def test_toml_native_values_still_load(hooks: Hooks, sites_toml: Path) -> None:
    text = sites_toml.read_text().replace('start = "07:00", end = "19:00"', "start = 07:00:00, end = 19:00:00")
    sites_toml.write_text(text.replace("speed = 600", "speed = 600.5"))
    site = load_site(sites_toml, "t", hooks.collect_adapters())
    assert site.section.clock.speed == 600.5
    assert site.section.compliance.contact_window is not None
    assert site.section.compliance.contact_window.start.hour == 7
    assert site.plugins["dialer"].settings.ring_seconds == (1.0, 10.0)  # type: ignore[attr-defined]


def test_cli_exits_2_naming_file_line_and_key(sites_toml: Path) -> None:
    text = sites_toml.read_text().replace('data_dir = "var/t"', 'data_dir = "/proc/cartera/var"')
    sites_toml.write_text(text.replace("seed = 7", 'seed = 7\nagents = "12"'))
    result = run_site(sites_toml, "check")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {sites_toml}:{_line_of(text, 'data_dir')}: site 't', key 'data_dir'")
    assert "Traceback" not in result.stderr


def test_unknown_key_lists_the_valid_ones(hooks: Hooks, sites_toml: Path) -> None:
    text = sites_toml.read_text().replace(
        'portfolio = "TARJETAS"', 'portfolio = "TARJETAS"\ncolumns = { cuenta = "x" }'
    )
    sites_toml.write_text(text)
    message = _error(hooks, sites_toml)
    assert message.startswith(f"{sites_toml}:{_line_of(text, 'columns =')}: site 't', key 'crm_sync.columns.cuenta'")
    assert message.endswith(
        "unknown key (valid: account_ref, action, balance, currency, days_past_due, debtor_name, due_date, "
        "payment_date, payment_ref, phones, risk_score)"
    )


def _second_site(crm_sync: str, data_dir: str = "var/u") -> str:
    return (
        f'\n[sites.u]\ntimezone = "America/Bogota"\ncountry = "CO"\ndata_dir = "{data_dir}"\n'
        '[sites.u.compliance]\nauthorised_channels = ["call"]\n'
        f'[sites.u.crm_sync]\nplugin = "csv"\ncreditor = "OTRO"\nportfolio = "TARJETAS"\n{crm_sync}'
    )


@pytest.mark.abuse
@pytest.mark.parametrize(
    ("crm_sync", "theirs", "ours"),
    [
        ('inbox = "inbox"\noutbox = "exports_u"\n', "crm_sync.inbox", "crm_sync.inbox"),
        ('inbox = "inbox_u"\noutbox = "inbox/out"\n', "crm_sync.outbox", "crm_sync.inbox"),
        ('inbox = "inbox_u"\noutbox = "exports_u"\narchive = "exports"\n', "crm_sync.archive", "crm_sync.outbox"),
    ],
)
def test_two_sites_sharing_a_creditor_folder_are_refused_naming_both(
    hooks: Hooks, tmp_path: Path, crm_sync: str, theirs: str, ours: str
) -> None:
    path = write_sites(tmp_path, extra=_second_site(crm_sync))
    message = _error(hooks, path)
    assert message.startswith(f"{path}:"), message
    assert f"site 't', key '{ours}'" in message
    assert f"site 'u', key '{theirs}'" in message
    assert f"site 'u', key '{theirs}'" in _error(hooks, path, site="u").split(":", 2)[2]


@pytest.mark.abuse
def test_two_sites_with_one_data_dir_are_refused(hooks: Hooks, tmp_path: Path) -> None:
    path = write_sites(tmp_path, extra=_second_site('inbox = "inbox_u"\noutbox = "exports_u"\n', data_dir="var/t"))
    message = _error(hooks, path)
    assert "site 't', key 'data_dir'" in message
    assert "site 'u', key 'data_dir'" in message


@pytest.mark.abuse
@pytest.mark.parametrize(
    ("crm_sync", "refused"),
    [
        ('inbox = "inbox_u"\noutbox = "inbox_u"\n', "crm_sync.outbox"),
        ('inbox = "inbox_u"\noutbox = "inbox_u/out"\n', "crm_sync.outbox"),
        ('inbox = "inbox_u/in"\noutbox = "inbox_u"\n', "crm_sync.outbox"),
        ('inbox = "inbox_u"\noutbox = "exports_u"\narchive = "inbox_u"\n', "crm_sync.archive"),
        ('inbox = "inbox_u"\noutbox = "exports_u"\nrejected = "exports_u/r"\n', "crm_sync.outbox"),
        ('inbox = "var"\noutbox = "exports_u"\n', "crm_sync.inbox"),
        ('inbox = "inbox_u"\noutbox = "var/u"\n', "crm_sync.outbox"),
    ],
)
def test_a_site_whose_own_creditor_folders_overlap_is_refused(
    hooks: Hooks, tmp_path: Path, crm_sync: str, refused: str
) -> None:
    """Round 21 C-F5: a csv outbox that was the inbox passed check; the node read its own export as a creditor
    file, moved it to rejected/ (the creditor never got it), then rejected each rejection report in turn."""
    path = write_sites(tmp_path, extra=_second_site(crm_sync))
    message = _error(hooks, path, site="u")
    assert f"site 'u', key '{refused}'" in message


def test_a_sites_archive_and_rejected_folders_may_lie_inside_its_inbox(hooks: Hooks, tmp_path: Path) -> None:
    folders = 'inbox = "inbox_u"\noutbox = "var/u/exports"\narchive = "inbox_u/hecho"\nrejected = "inbox_u/malos"\n'
    path = write_sites(tmp_path, extra=_second_site(folders))
    assert load_site(path, "u", hooks.collect_adapters()).name == "u"


def test_sites_with_their_own_folders_load(hooks: Hooks, tmp_path: Path) -> None:
    path = write_sites(tmp_path, extra=_second_site('inbox = "inbox_u"\noutbox = "exports_u"\n'))
    assert load_site(path, "t", hooks.collect_adapters()).name == "t"
    assert load_site(path, "u", hooks.collect_adapters()).name == "u"


def _sftp_site(name: str, folders: str, server: str = 'host = "sftp.bco.example"\nusername = "cobranza"\n') -> str:
    return (
        f'\n[sites.{name}]\ntimezone = "America/Bogota"\ncountry = "CO"\ndata_dir = "var/{name}"\n'
        f'[sites.{name}.compliance]\nauthorised_channels = ["call"]\n'
        f'[sites.{name}.crm_sync]\nplugin = "sftp_csv"\n{server}password = "${{CARTERA_TEST_SFTP_PASSWORD}}"\n'
        f'known_hosts = "known_hosts"\ncreditor = "BCO"\nportfolio = "TARJETAS"\n{folders}'
    )


@pytest.fixture
def sftp_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTERA_TEST_SFTP_PASSWORD", "a password")


@pytest.mark.abuse
@pytest.mark.usefixtures("sftp_password")
@pytest.mark.parametrize(
    ("theirs", "ours", "keys"),
    [
        (
            'inbox = "/entrada/"\noutbox = "/salida/v"\n',
            'inbox = "/entrada"\noutbox = "/salida/u"\n',
            ("inbox", "inbox"),
        ),
        ('inbox = "/v"\noutbox = "/entrada/x/../salida"\n', 'inbox = "/entrada"\noutbox = "/u"\n', ("outbox", "inbox")),
        (
            'inbox = "entrada"\noutbox = "salida-v"\nport = 22\n',
            'inbox = "entrada/"\noutbox = "u"\n',
            ("inbox", "inbox"),
        ),
    ],
)
def test_two_sites_on_one_remote_creditor_folder_are_refused_naming_both(
    hooks: Hooks, tmp_path: Path, theirs: str, ours: str, keys: tuple[str, str]
) -> None:
    their_key, our_key = keys
    path = write_sites(tmp_path, extra=_sftp_site("u", ours) + _sftp_site("v", theirs))
    message = _error(hooks, path, site="u")
    assert f"site 'u', key 'crm_sync.{our_key}'" in message
    assert f"overlaps site 'v', key 'crm_sync.{their_key}' (cobranza:sftp.bco.example:22:" in message


@pytest.mark.usefixtures("sftp_password")
def test_sites_on_other_sftp_servers_or_logins_may_use_the_same_remote_folders(hooks: Hooks, tmp_path: Path) -> None:
    folders = 'inbox = "/entrada"\noutbox = "/salida"\n'
    others = [
        'host = "sftp.otro.example"\nusername = "cobranza"\n',
        'host = "sftp.bco.example"\nusername = "sede2"\n',
        'host = "sftp.bco.example"\nusername = "cobranza"\nport = 2222\n',
    ]
    extra = _sftp_site("u", folders) + "".join(_sftp_site(f"v{n}", folders, server) for n, server in enumerate(others))
    path = write_sites(tmp_path, extra=extra)
    assert load_site(path, "u", hooks.collect_adapters()).name == "u"


@pytest.mark.abuse
@pytest.mark.usefixtures("sftp_password")
@pytest.mark.parametrize(
    ("their_server", "their_folders"),
    [
        ('host = "SFTP.BCO.Example"\nusername = "cobranza"\n', 'inbox = "/entrada"\noutbox = "/salida/v"\n'),
        ('host = "sftp.bco.example."\nusername = "cobranza"\nport = 22\n', 'inbox = "/entrada"\noutbox = "/v"\n'),
        ('host = "sftp.bco.example"\nusername = "cobranza"\n', 'inbox = "//entrada/./x/.."\noutbox = "/v"\n'),
    ],
)
def test_one_remote_inbox_spelt_otherwise_is_refused(
    hooks: Hooks, tmp_path: Path, their_server: str, their_folders: str
) -> None:
    """Host names compare without case or trailing dot, paths normalised (#14 red team round 8, M3)."""
    extra = _sftp_site("u", 'inbox = "/entrada"\noutbox = "/salida/u"\n') + _sftp_site("v", their_folders, their_server)
    message = _error(hooks, write_sites(tmp_path, extra=extra), site="u")
    assert "site 'u', key 'crm_sync.inbox'" in message
    assert "overlaps site 'v', key 'crm_sync.inbox' (cobranza:sftp.bco.example:22:/entrada)" in message


@pytest.mark.abuse
@pytest.mark.usefixtures("sftp_password")
def test_a_relative_and_an_absolute_remote_folder_on_one_login_are_refused(hooks: Hooks, tmp_path: Path) -> None:
    """``in`` is under the login's home, which the configuration cannot know: it may be ``/home/cobranza/in``."""
    extra = _sftp_site("u", 'inbox = "in"\noutbox = "out-u"\n') + _sftp_site(
        "v", 'inbox = "/home/cobranza/in"\noutbox = "/home/cobranza/out-v"\n'
    )
    message = _error(hooks, write_sites(tmp_path, extra=extra), site="u")
    assert "site 'u', key 'crm_sync.inbox'" in message
    assert "site 'v', key 'crm_sync.inbox'" in message
    assert "write both absolute" in message


SHARED_TOKEN = "shared-token-0123456789abcdef-Q7"


def _integration_site(directory: Path, bco_webhook_token: str = "${BCO_HOOK_TOKEN}") -> Path:
    """Site ``t`` on the ``http`` creditor API (BCO with a webhook, OTRO) and two integrations of the workspace
    API: ``desk`` (``${DESK_TOKEN}``), then ``crm`` (``${CRM_WS_TOKEN}``)."""
    config = write_sites(directory)
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text[: text.index("[sites.t.crm_sync]")]
        + '[sites.t.crm_sync]\nplugin = "http"\n'
        + '[sites.t.crm_sync.creditors.BCO]\ntoken = "${BCO_TOKEN}"\n'
        + f'webhook_url = "https://crm.bco.example/hook"\nwebhook_token = "{bco_webhook_token}"\n'
        + '[sites.t.crm_sync.creditors.OTRO]\ntoken = "${OTRO_TOKEN}"\n'
        + '[sites.t.workspace.integrations.desk]\ntoken = "${DESK_TOKEN}"\n'
        + '[sites.t.workspace.integrations.crm]\ntoken = "${CRM_WS_TOKEN}"\n',
        encoding="utf-8",
    )
    return config


@pytest.fixture
def distinct_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("BCO_TOKEN", "OTRO_TOKEN", "CRM_WS_TOKEN", "BCO_HOOK_TOKEN", "DESK_TOKEN"):
        monkeypatch.setenv(name, f"{name.lower().replace('_', '-')}-0123456789abcdef")


@pytest.mark.abuse
@pytest.mark.usefixtures("distinct_tokens")
@pytest.mark.parametrize(
    ("shared_with", "holder"),
    [
        ("BCO_TOKEN", "crm_sync.creditors.BCO.token"),  # a creditor's API token
        ("BCO_HOOK_TOKEN", "crm_sync.creditors.BCO.webhook_token"),  # the token the node sends BCO's webhook
        ("DESK_TOKEN", "workspace.integrations.desk.token"),  # another integration's
    ],
)
def test_an_integration_token_used_for_another_role_is_refused_naming_both_keys_never_the_secret(
    hooks: Hooks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_with: str, holder: str
) -> None:
    """The integration's token acts for the whole site: the same secret held by a creditor (or sent to one)
    would let that creditor read every creditor's calls and disposition them (#15 red team round 9, M1)."""
    monkeypatch.setenv("CRM_WS_TOKEN", SHARED_TOKEN)
    monkeypatch.setenv(shared_with, SHARED_TOKEN)
    config = _integration_site(tmp_path)
    message = _error(hooks, config)
    line = _line_of(config.read_text(), "${CRM_WS_TOKEN}")
    assert message.startswith(f"{config}:{line}: site 't', key 'workspace.integrations.crm.token': "), message
    assert f"the same secret as {holder}" in message, message
    for part in (SHARED_TOKEN, SHARED_TOKEN[:8], SHARED_TOKEN[-8:]):
        assert part not in message, message


@pytest.mark.usefixtures("distinct_tokens")
def test_integration_and_creditor_tokens_of_their_own_load(hooks: Hooks, tmp_path: Path) -> None:
    config = _integration_site(tmp_path, bco_webhook_token="${BCO_TOKEN}")
    site = load_site(config, "t", hooks.collect_adapters())
    assert sorted(site.section.workspace.integrations) == ["crm", "desk"]


@pytest.mark.abuse
def test_check_exits_2_on_an_integration_token_a_creditor_holds(tmp_path: Path) -> None:
    config = _integration_site(tmp_path)
    tokens = {
        "BCO_TOKEN": "bco-token-0123456789abcdef-W3",
        "BCO_HOOK_TOKEN": "bco-hook-0123456789abcdef-K5",
        "DESK_TOKEN": "desk-token-0123456789abcdef-J2",
    }
    result = run_site(config, "check", env={**tokens, "OTRO_TOKEN": SHARED_TOKEN, "CRM_WS_TOKEN": SHARED_TOKEN})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "key 'workspace.integrations.crm.token'" in result.stderr
    assert "crm_sync.creditors.OTRO.token" in result.stderr
    assert "Traceback" not in result.stderr
    assert SHARED_TOKEN not in result.stdout + result.stderr


def _creditor_api_site(name: str, otro_token: str) -> str:
    """Site ``name`` on the ``http`` creditor API, creditor OTRO's token ``otro_token`` (as written)."""
    return (
        f'\n[sites.{name}]\ntimezone = "America/Bogota"\ncountry = "CO"\ndata_dir = "var/{name}"\n'
        f'[sites.{name}.compliance]\nauthorised_channels = ["call"]\n'
        f'[sites.{name}.crm_sync]\nplugin = "http"\n[sites.{name}.crm_sync.creditors.OTRO]\ntoken = "{otro_token}"\n'
    )


@pytest.mark.abuse
@pytest.mark.usefixtures("distinct_tokens")
@pytest.mark.parametrize(
    ("checked", "key", "holder"),
    [
        ("t", "workspace.integrations.crm.token", "site 'u', key 'crm_sync.creditors.OTRO.token'"),
        ("u", "crm_sync.creditors.OTRO.token", "site 't', key 'workspace.integrations.crm.token'"),
    ],
)
@pytest.mark.parametrize("their_token", ["${CRM_WS_TOKEN}", "${U_OTRO_TOKEN}"])
def test_an_integration_token_another_site_holds_as_a_plugin_secret_is_refused_at_either_site(
    hooks: Hooks,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    checked: str,
    key: str,
    holder: str,
    their_token: str,
) -> None:
    """Site u's creditor OTRO would stream site t's calls and disposition them with its own API token: the rule
    holds across the sites of the file, by value or by the same variable (#14 red team round 11, M2)."""
    monkeypatch.setenv("CRM_WS_TOKEN", SHARED_TOKEN)
    monkeypatch.setenv("U_OTRO_TOKEN", SHARED_TOKEN)
    config = _integration_site(tmp_path)
    config.write_text(config.read_text(encoding="utf-8") + _creditor_api_site("u", their_token), encoding="utf-8")
    message = _error(hooks, config, site=checked)
    assert f"site {checked!r}, key {key!r}: the same secret as {holder}" in message, message
    for part in (SHARED_TOKEN, SHARED_TOKEN[:8], SHARED_TOKEN[-8:]):
        assert part not in message, message


@pytest.mark.usefixtures("distinct_tokens")
def test_another_sites_token_in_a_variable_unset_here_or_of_its_own_loads(
    hooks: Hooks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("U_OTRO_TOKEN", raising=False)
    config = _integration_site(tmp_path)
    config.write_text(config.read_text(encoding="utf-8") + _creditor_api_site("u", "${U_OTRO_TOKEN}"), encoding="utf-8")
    assert load_site(config, "t", hooks.collect_adapters()).name == "t"
    monkeypatch.setenv("U_OTRO_TOKEN", "u-otro-token-0123456789abcdef-P4")
    assert load_site(config, "u", hooks.collect_adapters()).name == "u"


SIP_TRUNK = """plugin = "sip_trunk"
account_uri = "sip:cartera@127.0.0.1"
dial_uri = "sip:{number}@127.0.0.1"
queue_uri = "sip:queue@127.0.0.1"
registrar = "sip:127.0.0.1"
username = "cartera"
password = "${CARTERA_TEST_TRUNK_PASSWORD}"
"""


@pytest.mark.parametrize("mode", ["preview", "ratio"])
def test_preview_mode_on_a_dialer_that_cannot_reach_a_given_agent_is_refused_at_load(
    hooks: Hooks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str
) -> None:
    """Preview calls are connected to the agent who placed them: on a trunk without ``targets_agents`` every offer
    would be refused 409 while ``check`` passed (#14 red team round 11)."""
    monkeypatch.setenv("CARTERA_TEST_TRUNK_PASSWORD", "a trunk password")
    config = write_sites(tmp_path)
    text = config.read_text(encoding="utf-8")
    text = text.replace('plugin = "simulator"\nseed = 7\nring_seconds = [1, 10]\ntalk_seconds = [5, 30]\n', SIP_TRUNK)
    config.write_text(text.replace("[sites.t.campaign]\n", f'[sites.t.campaign]\nmode = "{mode}"\n'), encoding="utf-8")
    if mode == "ratio":
        assert load_site(config, "t", hooks.collect_adapters()).plugins["dialer"].name == "sip_trunk"
        return
    message = _error(hooks, config)
    line = _line_of(config.read_text(encoding="utf-8"), 'mode = "preview"')
    assert message.startswith(f"{config}:{line}: site 't', key 'campaign.mode': preview mode needs a dialer"), message
    assert "dialer 'sip_trunk' cannot" in message


def test_a_file_saved_with_a_byte_order_mark_is_read(hooks: Hooks, sites_toml: Path) -> None:
    """Windows editors save UTF-8 with a BOM; it was read as text and refused as 'Invalid statement' at 1:1
    (red team round 15 L5)."""
    text = sites_toml.read_text(encoding="utf-8")
    sites_toml.write_bytes(b"\xef\xbb\xbf" + text.encode())
    assert load_site(sites_toml, "t", hooks.collect_adapters()).name == "t"
    sites_toml.write_bytes(b"\xef\xbb\xbf" + text.replace("seed = 7", "seed = 7\nring_timout = 30").encode())
    line = _line_of(text.replace("seed = 7", "seed = 7\nring_timout = 30"), "ring_timout")
    assert _error(hooks, sites_toml).startswith(f"{sites_toml}:{line}: site 't', key 'dialer.ring_timout'")


def test_a_utf16_file_is_refused_naming_it(hooks: Hooks, sites_toml: Path) -> None:
    sites_toml.write_bytes(sites_toml.read_text(encoding="utf-8").encode("utf-16"))
    assert _error(hooks, sites_toml).startswith(f"{sites_toml}: cannot read: ")


@pytest.mark.abuse
@pytest.mark.parametrize(
    "name", ["../../evil", "a/b", "bogota.norte", "Bogota", "bogotá", "_x", "-x", "x" * 33, "a b", "a\x1bb", ""]
)
def test_a_site_name_that_is_no_plain_name_is_refused_with_its_line(hooks: Hooks, tmp_path: Path, name: str) -> None:
    """A site's name makes its data directory and database file (var/NAME) and its channel ids at the PBX:
    '../../evil' made files outside var/, 'bogota.norte' and 'bogota_norte' one channel prefix (red team round 15
    L3). Nothing is created."""
    path = write_sites(tmp_path)
    quoted = '"' + name.replace("\x1b", "\\u001b") + '"'
    path.write_text(path.read_text(encoding="utf-8").replace("[sites.t", f"[sites.{quoted}"), encoding="utf-8")
    message = _error(hooks, path, site=name)
    assert message.startswith(f"{path}:2: site {name!r}: not a valid site name: 1 to 32 lower-case letters"), message


@pytest.mark.abuse
def test_check_of_a_site_named_out_of_var_creates_nothing(tmp_path: Path) -> None:
    config = tmp_path / "a" / "b" / "sub"
    config.mkdir(parents=True)
    path = write_sites(config)
    path.write_text(path.read_text(encoding="utf-8").replace("[sites.t", '[sites."../../evil"'), encoding="utf-8")
    path.write_text(path.read_text(encoding="utf-8").replace('data_dir = "var/t"\n', ""), encoding="utf-8")
    result = run_cli(["--config", str(path), "--site", "../../evil", "check"], cwd=config)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"error: {path}:2: site '../../evil': not a valid site name"), result.stderr
    assert sorted(p.name for p in tmp_path.rglob("*evil*")) == []
    assert not (config / "var").exists()


@pytest.mark.parametrize("name", ["bogota", "bogota_norte", "bogota-norte", "2", "x" * 32])
def test_plain_site_names_load(hooks: Hooks, tmp_path: Path, name: str) -> None:
    path = write_sites(tmp_path)
    path.write_text(path.read_text(encoding="utf-8").replace("[sites.t", f'[sites."{name}"'), encoding="utf-8")
    assert load_site(path, name, hooks.collect_adapters()).name == name
