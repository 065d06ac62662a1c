"""The vendor's HTTP API, stdlib only: one JSON POST per message, a GET to check the token.

Protocol (replace it with your vendor's): ``POST url`` with ``{"to", "text", "reference"}`` answers 2xx with
``{"id": "...", "status": "..."}``; ``GET url`` answers 2xx when the bearer token is valid.
"""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import IO
from urllib.error import HTTPError


class WebhookError(Exception):
    """The vendor could not be reached or answered something other than a well-formed 2xx."""


@dataclass(frozen=True, slots=True)
class VendorAnswer:
    id: str
    status: str


class _RefuseRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would carry the bearer token (and, for POST, not the message) elsewhere: fail instead."""

    def redirect_request(  # noqa: PLR0913, PLR0917 (urllib's signature)
        self, req: urllib.request.Request, fp: IO[bytes], code: int, msg: str, headers: Message, newurl: str
    ) -> None:
        return None


class WebhookClient:
    """Thread-safe: every request opens its own connection."""

    def __init__(self, url: str, token: str, timeout: float) -> None:
        self.url = url
        self._token = token
        self._timeout = timeout
        self._opener = urllib.request.build_opener(_RefuseRedirects)

    def submit(self, *, to: str, text: str, reference: str) -> VendorAnswer:
        """POST one message and return the vendor's answer. Never retries: a retry could send it twice."""
        body = json.dumps({"to": to, "text": text, "reference": reference}, ensure_ascii=False)
        status, payload = self._request("POST", body.encode("utf-8"))
        if not 200 <= status < 300:
            raise WebhookError(f"vendor answered HTTP {status}: {_excerpt(payload)}")
        try:
            answer = json.loads(payload)
        except ValueError:
            raise WebhookError(f"vendor answer is not JSON: {_excerpt(payload)}") from None
        if not (
            isinstance(answer, dict)
            and isinstance(answer.get("id"), str)
            and answer["id"]
            and isinstance(answer.get("status"), str)
        ):
            raise WebhookError(f'vendor answer lacks "id" and "status": {_excerpt(payload)}')
        return VendorAnswer(id=answer["id"], status=answer["status"])

    def probe(self) -> int:
        """GET the endpoint with the token and return the HTTP status."""
        return self._request("GET", None)[0]

    def _request(self, method: str, body: bytes | None) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {self._token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
        request = urllib.request.Request(self.url, data=body, headers=headers, method=method)
        try:
            with self._opener.open(request, timeout=self._timeout) as response:
                return int(response.status), response.read()
        except HTTPError as exc:
            with exc:
                return exc.code, exc.read()
        except OSError as exc:  # URLError, refused connections and timeouts
            raise WebhookError(f"cannot reach {self.url}: {getattr(exc, 'reason', exc)}") from exc


def _excerpt(payload: bytes) -> str:
    text = payload.decode("utf-8", errors="replace").strip()
    return repr(text[:200]) if text else "(empty body)"
