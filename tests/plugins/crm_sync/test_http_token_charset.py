"""A creditor's token (and webhook token) is an RFC 6750 b64token, compared exactly: configuration refuses one
with whitespace or any other character (``"$BCO_TOK "`` passed the shared-token check yet acted as BCO, since the
API stripped what it was presented), and the API compares the presented token as sent, in constant time."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from cartera.core.hooks import Hooks
from cartera.plugins.crm_sync.http.api import token_owner
from cartera.plugins.crm_sync.http.config import CreditorAccess
from cartera.plugins.crm_sync.http.plugin import HttpCrmSync
from tests.conftest import run_site
from tests.plugins.crm_sync.test_http import BCO_TOKEN, served  # noqa: F401 (the fixture)
from tests.plugins.crm_sync.test_http_creditor_secrets import OTHER, SHARED, http_site, line_of, refusal

pytestmark = pytest.mark.abuse

BAD = {
    "trailing space": f"{SHARED} ",
    "trailing newline": f"{SHARED}\n",
    "leading space": f" {SHARED}",
    "inner space": f"{SHARED[:10]} {SHARED[10:]}",
    "tab": f"{SHARED}\t",
    "non-ASCII": f"{SHARED}ñ€",
    "quote": f'{SHARED}"',
    "padding inside": f"{SHARED[:10]}={SHARED[10:]}",
}


@pytest.mark.parametrize("key", ["token", "webhook_token"])
@pytest.mark.parametrize("how", sorted(BAD))
def test_a_token_outside_the_b64token_set_is_refused_naming_the_key_never_the_value(
    hooks: Hooks, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, key: str, how: str
) -> None:
    monkeypatch.setenv("BCO_TOK", SHARED)
    monkeypatch.setenv("OTRO_TOK2", BAD[how])
    tokens = {"token": '"${OTRO_TOK2}"', "webhook_token": f'"{OTHER}"'}
    if key == "webhook_token":
        tokens = {"token": f'"{OTHER}"', "webhook_token": '"${OTRO_TOK2}"'}
    config = http_site(
        tmp_path,
        f"""
[sites.t.crm_sync.creditors.BCO]
token = "${{BCO_TOK}}"
[sites.t.crm_sync.creditors.OTRO]
token = {tokens["token"]}
webhook_url = "https://crm.otro.example/hook"
webhook_token = {tokens["webhook_token"]}
""",
    )
    message = refusal(hooks, config)
    line = line_of(config, "OTRO", key)
    where = rf"{re.escape(str(config))}:{line}: site 't', key 'crm_sync\.creditors\.OTRO\.{key}': "
    assert re.match(where, message), message
    assert "b64token" in message, message
    for part in (SHARED, SHARED[:8], SHARED[-8:], BAD[how]):
        assert part not in message, message


def test_the_b64token_set_and_its_trailing_padding_are_accepted() -> None:
    token = "AZaz09-._~+/AZaz09-._~+/xy=="
    access = CreditorAccess.model_validate({"token": token, "webhook_token": token})
    assert access.token.get_secret_value() == token


@pytest.mark.parametrize(
    ("variable", "key"), [("OTRO_TOK2", "token"), ("HOOK_TOK", "webhook_token")], ids=["token", "webhook"]
)
def test_check_exits_2_on_a_token_with_whitespace_or_non_ascii_and_never_prints_it(
    tmp_path: Path, variable: str, key: str
) -> None:
    config = http_site(
        tmp_path,
        """
[sites.t.crm_sync.creditors.BCO]
token = "${BCO_TOK}"
[sites.t.crm_sync.creditors.OTRO]
token = "${OTRO_TOK2}"
webhook_url = "https://crm.otro.example/hook"
webhook_token = "${HOOK_TOK}"
""",
    )
    env = {"BCO_TOK": SHARED, "OTRO_TOK2": OTHER, "HOOK_TOK": OTHER}
    for value in (f"{SHARED} ", f"{SHARED}\n", f"{OTHER}ñ€"):
        result = run_site(config, "check", env=env | {variable: value})
        assert result.returncode == 2, result.stdout + result.stderr
        assert f"key 'crm_sync.creditors.OTRO.{key}'" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
        assert "UnicodeEncodeError" not in result.stderr
        for part in (SHARED, OTHER, SHARED[:8], OTHER[:8], SHARED[-8:], OTHER[-8:]):
            assert part not in result.stdout + result.stderr


def test_the_presented_token_is_compared_exactly() -> None:
    creditors = {"BCO": CreditorAccess.model_validate({"token": BCO_TOKEN})}
    assert token_owner(creditors, BCO_TOKEN) == "BCO"
    for presented in (f" {BCO_TOKEN}", f"{BCO_TOKEN} ", f"{BCO_TOKEN}\n", f"\t{BCO_TOKEN}", BCO_TOKEN[:-1], ""):
        assert token_owner(creditors, presented) is None, repr(presented)
    assert token_owner(creditors, f"{BCO_TOKEN}ñ") is None  # non-ASCII presented: refused, not an error


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer  {BCO_TOKEN}", f"Bearer \t{BCO_TOKEN}", f"Bearer {BCO_TOKEN} x", f"Bearer\t{BCO_TOKEN}"],
    ids=["two spaces", "space and tab", "trailing word", "tab"],
)
def test_the_api_refuses_a_token_with_anything_around_it(
    served: Callable[..., HttpCrmSync],  # noqa: F811
    authorization: str,
) -> None:
    adapter = served()
    with httpx.Client(base_url=adapter.api_url, timeout=10) as client:
        assert client.get("/activities", headers={"Authorization": f"Bearer {BCO_TOKEN}"}).status_code == 200
        for scheme in ("Bearer", "bearer", "BEARER"):
            ok = client.get("/activities", headers={"Authorization": f"{scheme} {BCO_TOKEN}"})
            assert ok.status_code == 200, scheme
        answer = client.get("/activities", headers={"Authorization": authorization})
        assert answer.status_code == 401, answer.text
