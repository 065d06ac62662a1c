"""The secrets of a site's configuration: each registered for redaction, none too short to be masked, and no
URL whose user or password a parser would misread.

A password with ``#``, ``@`` or ``/`` written as is into a URL is split there: part of it is taken for the host
(printed, and sent to DNS). Such URLs are refused, never echoed, with the advice to percent-encode. A password
in a URL's query (libpq's ``?password=``, ``sslpassword=``) would be printed with the URL: refused too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

from pydantic import BaseModel, SecretStr

from cartera.core.redaction import MIN_SECRET_LENGTH, register_secret

_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://(?P<rest>.*)", re.DOTALL)
#: What a URL's user and password may hold as they are (RFC 3986, and non-ASCII); the rest must be %-encoded.
_USERINFO = re.compile(r"(?:[A-Za-z0-9\-._~!$&'()*+,;=:\u0080-\U0010ffff]|%[0-9A-Fa-f]{2})*")
_PERCENT_ENCODE = (
    "the URL's user or password holds characters that must be percent-encoded (@ as %40, # as %23, / as %2F, "
    "...: urllib.parse.quote(password, safe='')); an @ elsewhere in the URL as %40 too"
)


def secret(value: str, what: str) -> None:
    """Have every output mask ``value``; :class:`ValueError` when it is too short to mask safely."""
    if len(value) < MIN_SECRET_LENGTH:
        raise ValueError(f"{what} is shorter than {MIN_SECRET_LENGTH} characters: too short a secret to be masked")
    register_secret(value)


def url_credentials(value: str) -> None:
    """When ``value`` is a URL with a user or password: :class:`ValueError` (without the value) unless they are
    percent-encoded where needed, or with a password in its query; its password is a :func:`secret`."""
    url = _URL.fullmatch(value)
    if url is None:
        return
    _no_query_password(url["rest"])
    if url["rest"].startswith("/") or "@" not in url["rest"]:
        return
    userinfo = url["rest"][: url["rest"].rindex("@")]
    if not _USERINFO.fullmatch(userinfo):
        raise ValueError(_PERCENT_ENCODE)
    password = userinfo.partition(":")[2]
    if password:
        secret(password, "the URL's password")


def url_password(value: str) -> str | None:
    """The password of URL ``value`` as written (``None``: no URL, or no password in it)."""
    url = _URL.fullmatch(value)
    if url is None or url["rest"].startswith("/") or "@" not in url["rest"]:
        return None
    password = url["rest"][: url["rest"].rindex("@")].partition(":")[2]
    return password or None


def _no_query_password(rest: str) -> None:
    query = rest.partition("?")[2].partition("#")[0]
    for name, _ in parse_qsl(query, keep_blank_values=True):
        if "password" in name.lower():
            raise ValueError(
                f"the URL's query holds {name!r}, which would be shown with the URL: put the password in the URL's"
                " user information instead (scheme://user:password@host/..., percent-encoded)"
            )


def secret_settings(settings: Any, key: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """``(key, value)`` of every ``SecretStr`` in a validated plugin config, nested ones too."""
    if isinstance(settings, SecretStr):
        yield key, settings.get_secret_value()
    elif isinstance(settings, BaseModel):
        for name, value in settings:
            yield from secret_settings(value, (*key, name))
    elif isinstance(settings, dict):
        for name, value in settings.items():
            yield from secret_settings(value, (*key, str(name)))
    elif isinstance(settings, list | tuple):
        for value in settings:
            yield from secret_settings(value, key)
