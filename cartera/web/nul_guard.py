"""Every request holding a NUL character is refused (400) before a route sees it: no text of the node's holds
one, and PostgreSQL cannot store one (a name, a note or a path would fail its write with a 500)."""

from __future__ import annotations

from fastapi import Request

_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")
#: Methods that take no body: theirs is never read, whatever their Content-Type says.
_BODILESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})
REFUSED = "a NUL character in the request"


class NulInRequest(Exception):
    """A request holding a NUL: answered 400 (the app's handler), audited with its path escaped."""


async def refuse_nul(request: Request) -> None:
    """The app's dependency: 400 when the path, the query or the form's or JSON body's text holds a NUL. A body is
    read only for a method that takes one, and only through the route's body limit (every route has one: the
    app's routers are included with ``max_body_size``), so never more than that limit is held."""
    texts: list[str] = [request.url.path, *(name + value for name, value in request.query_params.multi_items())]
    content_type = "" if request.method in _BODILESS else request.headers.get("content-type", "")
    if content_type.startswith(_FORMS):
        form = await request.form()
        texts += [name + value for name, value in form.multi_items() if isinstance(value, str)]
    elif "json" in content_type:
        body = await request.body()
        if b"\\u0000" in body:  # what JSON encodes a NUL to; the decoded text is looked at below
            raise NulInRequest(REFUSED)
        texts.append(body.decode("utf-8", "replace"))
    if any("\x00" in text for text in texts):
        raise NulInRequest(REFUSED)
