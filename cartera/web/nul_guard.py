"""Every request holding text no store or file of the node's can keep is refused (400) before a route sees it: a
NUL (PostgreSQL stores none: a name, a note or a path would fail its write with a 500) or a lone UTF-16 surrogate
(UTF-8 encodes none: a JSON ``"\\ud800"`` failed a batch's or a note's write with a 500). A route may take query
parameters whose bytes it decodes itself in a charset the request names (:func:`decodes_query`: Kannel's MO text,
UTF-16BE for UCS-2, holds a zero byte for every Latin character): those the route checks once decoded."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import TypeVar

from fastapi import Request

from cartera.core.control_characters import unkeepable

_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
#: Methods that take no body: theirs is never read, whatever their Content-Type says.
_BODILESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
#: Whether a JSON text holds a surrogate's escape at all (then its escapes are read one by one).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
#: A JSON escape (``\\"``, ``\\\\``, ...), a surrogate pair's two escapes, or a lone surrogate's escape (its group):
#: read left to right, so an escaped backslash before ``u`` (``"\\\\ud800"``, the text ``\\ud800``) is no escape.
_ESCAPE = re.compile(
    r"\\(?:u[dD][89abAB][0-9a-fA-F]{2}\\u[dD][c-fC-F][0-9a-fA-F]{2}|(u[dD][89a-fA-F][0-9a-fA-F]{2})|.)", re.DOTALL
)


#: The attribute of a route's endpoint naming the query parameters it decodes itself (:func:`decodes_query`).
_DECODED_QUERY = "__cartera_decodes_query__"
_Endpoint = TypeVar("_Endpoint", bound=Callable[..., object])


def decodes_query(*names: str) -> Callable[[_Endpoint], _Endpoint]:
    """Mark a route's endpoint as decoding the query parameters ``names`` itself, from their raw bytes in a charset
    the request declares: the guard leaves their values (never their names, nor any other parameter) to the route,
    which must refuse a NUL or a lone surrogate in the text it decoded (:func:`~cartera.core.control_characters.
    unkeepable`, answered 400) before it keeps anything."""

    def mark(endpoint: _Endpoint) -> _Endpoint:
        setattr(endpoint, _DECODED_QUERY, frozenset(names))
        return endpoint

    return mark


class NulInRequest(Exception):
    """A request holding a NUL or a lone surrogate: answered 400 (the app's handler, its text the reason), audited
    with its path escaped."""


def refused(what: str) -> NulInRequest:
    return NulInRequest(f"{what} in the request")


async def refuse_nul(request: Request) -> None:
    """The app's dependency: 400 when the path, the query or the form's or JSON body's text holds a NUL or a lone
    surrogate. A body is read only for a method that takes one, and only through the route's body limit (every
    route has one: the app's routers are included with ``max_body_size``), so never more than that limit is held.
    A JSON body is decoded as the JSON parser decodes it (its encoding detected, surrogates' bytes passed), and
    its escapes of a NUL or a lone surrogate are looked at too. A query parameter its route decodes itself
    (:func:`decodes_query`) is the route's to check, once decoded."""
    own: frozenset[str] = getattr(request.scope.get("endpoint"), _DECODED_QUERY, frozenset())
    query = request.query_params.multi_items()
    texts: list[str] = [request.url.path, *(name + ("" if name in own else value) for name, value in query)]
    content_type = "" if request.method in _BODILESS else request.headers.get("content-type", "").lower()
    if content_type.startswith(_FORMS):
        form = await request.form()
        texts += [name + value for name, value in form.multi_items() if isinstance(value, str)]
    elif "json" in content_type:
        body = await request.body()
        text = _as_json_reads(body)
        if "\\u0000" in text:  # what JSON encodes a NUL to, in whatever encoding the parser detects
            raise refused("a NUL character")
        if _SURROGATE_ESCAPE.search(text) and any(escape[1] for escape in _ESCAPE.finditer(text)):
            raise refused("a lone UTF-16 surrogate")
        texts += [text, body.decode("utf-8", "replace")]  # the raw bytes' NULs too (a UTF-16 body has them)
    for text in texts:
        problem = unkeepable(text)
        if problem:
            raise refused(problem)


def _as_json_reads(body: bytes) -> str:
    """``body``'s text as :func:`json.loads` decodes it (which passes a surrogate's UTF-8 bytes through); a body it
    cannot decode is the parser's to refuse, looked at here with its bad bytes replaced."""
    try:
        return body.decode(json.detect_encoding(body), "surrogatepass")
    except (UnicodeDecodeError, LookupError):
        return body.decode("utf-8", "replace")
