"""Secrets are masked in every output, whatever encoding carries them; URLs that would leak them are refused."""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path
from urllib.parse import quote, quote_plus

import pytest

from cartera.core.config import load_site
from cartera.core.errors import ConfigError
from cartera.core.hooks import Hooks
from cartera.core.logs import JsonFormatter, TextFormatter
from cartera.core.redaction import MASK, Redactor, register_secret
from tests.conftest import run_site, write_sites
from tests.hostile_ami import echoing_ami

SECRET = "Zq7\"pa\\ss#@/wörd'9"


def carried(secret: str) -> dict[str, str]:
    """``secret`` as outputs carry it: as is, JSON-escaped, repr'd (or its bytes), percent-encoded, in hex, and
    JSON over repr."""
    forms = {
        "plain": secret,
        "json": json.dumps(secret)[1:-1],
        "json-utf8": json.dumps(secret, ensure_ascii=False)[1:-1],
        "repr": repr(secret)[1:-1],
        "ascii": ascii(secret)[1:-1],
        "percent": quote(secret, safe=""),
        "percent-plus": quote_plus(secret),
        "unicode-escape": secret.encode("unicode_escape").decode(),
        "bytes-repr": repr(secret.encode())[2:-1],
        "hex": secret.encode().hex(),
    }
    forms["json-of-repr"] = json.dumps(forms["repr"])[1:-1]
    return forms


def test_every_encoding_of_a_secret_is_masked_inside_other_text() -> None:
    redactor = Redactor()
    redactor.add(SECRET)
    for name, form in carried(SECRET).items():
        assert redactor.redact(f"before {form} after") == f"before {MASK} after", name


def test_a_url_password_is_masked_even_when_unknown() -> None:
    assert Redactor().redact("at postgresql://cartera:s3cr%40t@db:5432/x ok") == (
        f"at postgresql://cartera:{MASK}@db:5432/x ok"
    )


def test_log_lines_mask_a_secret_json_or_repr_escaped() -> None:
    register_secret(SECRET)
    try:
        raise RuntimeError(f"vendor said {SECRET!r}")
    except RuntimeError:
        exc_info = sys.exc_info()
    for formatter in (JsonFormatter(), TextFormatter()):
        record = logging.LogRecord("cartera", logging.ERROR, __file__, 1, "failed", None, exc_info)
        record.fields = {"detail": f"login {SECRET} refused", "echo": repr(SECRET)}
        line = formatter.format(record)
        for name, form in carried(SECRET).items():
            assert form not in line, (name, line)
        assert MASK in line


def ami_site(tmp_path: Path, port: int) -> Path:
    config = write_sites(tmp_path)
    text = config.read_text()
    start, end = text.index("[sites.t.dialer]"), text.index("[sites.t.recording]")
    dialer = (
        f'[sites.t.dialer]\nplugin = "asterisk_ami"\nhost = "127.0.0.1"\nport = {port}\nusername = "cartera"\n'
        'secret = "${CARTERA_TEST_AMI_SECRET}"\nqueue = "cobranza"\nconnect_timeout_s = 2\naction_timeout_s = 2\n\n'
    )
    config.write_text(text[:start] + dialer + text[end:])
    return config


@pytest.mark.abuse
def test_check_masks_the_secret_a_hostile_ami_peer_echoes(tmp_path: Path) -> None:
    with echoing_ami() as peer:
        config = ami_site(tmp_path, peer.port)
        env = {"CARTERA_TEST_AMI_SECRET": SECRET}
        results = [
            run_site(config, *args, env=env) for args in (["check"], ["--debug", "--log-format", "json", "check"])
        ]
    for result in results:
        assert result.returncode == 1, result.stderr
        assert "FAIL  dialer asterisk_ami" in result.stdout
        assert f"Secret: {MASK}" in result.stdout  # the peer echoed it, the node masked it
        for name, form in carried(SECRET).items():
            assert form not in result.stdout + result.stderr, name


def _error(hooks: Hooks, path: Path) -> str:
    with pytest.raises(ConfigError) as raised:
        load_site(path, "t", hooks.collect_adapters())
    return str(raised.value)


@pytest.mark.parametrize("password", ["p#ss-word", "pa@ss-word", "pa/ss-word", 'pa"s\\s wörd'])
def test_a_database_password_not_percent_encoded_is_refused_unshown(
    hooks: Hooks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    monkeypatch.setenv("CARTERA_TEST_DB_PASSWORD", password)
    path = write_sites(tmp_path, database="postgresql+psycopg://cartera:${CARTERA_TEST_DB_PASSWORD}@127.0.0.1/x")
    message = _error(hooks, path)
    assert re.match(rf"{re.escape(str(path))}:\d+: site 't', key 'database': ", message), message
    assert "percent-encoded" in message
    assert "-word" not in message
    assert "127.0.0.1" not in message


@pytest.mark.abuse
@pytest.mark.parametrize("parameter", ["password", "sslpassword", "PGPASSWORD"])
@pytest.mark.parametrize("key", ["database", "crm_sync.url"])
def test_a_database_password_in_the_url_query_is_refused_unshown(
    hooks: Hooks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, parameter: str
) -> None:
    """Rendering a URL hides only its userinfo password: one in the query would be printed with it."""
    monkeypatch.setenv("CARTERA_TEST_DB_PASSWORD", "query-secret-9")
    url = "postgresql+psycopg://cartera@127.0.0.1/x?sslmode=disable&" + parameter + "=${CARTERA_TEST_DB_PASSWORD}"
    if key == "database":
        path = write_sites(tmp_path, database=url)
    else:
        path = write_sites(tmp_path)
        sql = f'plugin = "sql"\nurl = "{url}"\nview = "v"\nactivities_table = "a"\n'
        path.write_text(path.read_text().replace('plugin = "csv"\ninbox = "inbox"\noutbox = "exports"\n', sql))
    message = _error(hooks, path)
    assert re.match(rf"{re.escape(str(path))}:\d+: site 't', key '{key}': ", message), message
    assert f"query holds '{parameter}'" in message
    assert "query-secret-9" not in message
    assert "127.0.0.1" not in message


def test_a_percent_encoded_database_password_loads_and_both_forms_are_masked(
    hooks: Hooks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CARTERA_TEST_DB_PASSWORD", quote(SECRET, safe=""))
    path = write_sites(tmp_path, database="postgresql+psycopg://cartera:${CARTERA_TEST_DB_PASSWORD}@127.0.0.1/x")
    site = load_site(path, "t", hooks.collect_adapters())
    assert site.database_url == f"postgresql+psycopg://cartera:{quote(SECRET, safe='')}@127.0.0.1/x"
    record = logging.LogRecord("cartera", logging.INFO, __file__, 1, "%s / %s", (site.database_url, SECRET), None)
    line = JsonFormatter().format(record)
    for name, form in carried(SECRET).items():
        assert form not in line, name


def test_a_secret_too_short_to_mask_is_refused(hooks: Hooks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CARTERA_TEST_DB_PASSWORD", "abc")
    path = write_sites(tmp_path, database="postgresql+psycopg://cartera:${CARTERA_TEST_DB_PASSWORD}@127.0.0.1/x")
    message = _error(hooks, path)
    assert "environment variable CARTERA_TEST_DB_PASSWORD is shorter than 4 characters" in message
    assert "abc" not in message


def s3_site(tmp_path: Path, endpoint: str) -> Path:
    config = write_sites(tmp_path)
    text = config.read_text()
    start, end = text.index("[sites.t.recording]"), text.index("[sites.t.sms]")
    recording = f'[sites.t.recording]\nplugin = "s3"\nbucket = "grabaciones"\nendpoint_url = "{endpoint}"\n\n'
    config.write_text(text[:start] + recording + text[end:])
    return config


@pytest.mark.parametrize("password", ["s3cret-key%2Fx", "s3cr\\\\et-key"])
def test_an_s3_endpoint_url_with_credentials_is_refused_never_rewritten_nor_shown(
    hooks: Hooks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, password: str
) -> None:
    monkeypatch.setenv("CARTERA_TEST_S3_PASSWORD", password)
    path = s3_site(tmp_path, "http://AKIDEXAMPLE:${CARTERA_TEST_S3_PASSWORD}@127.0.0.1:7480")
    message = _error(hooks, path)
    assert "key 'recording.endpoint_url'" in message
    assert "et-key" not in message
