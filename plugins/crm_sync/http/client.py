"""HTTP towards creditors: activity exports POSTed to their webhook, with retries; reachability probes."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpx

from core.errors import CarteraError
from core.models import Activity
from plugins.crm_sync.http.models import ActivityOut

_RETRYABLE = {408, 425, 429, 500, 502, 503, 504}


class WebhookFailed(CarteraError):
    """The creditor's webhook did not take an export."""


def display(url: str) -> str:
    """``url`` without credentials, query or fragment: safe in logs and errors."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def export_body(creditor: str, activities: Sequence[Activity]) -> bytes:
    """One webhook delivery: the creditor's activities, in seq order, with the seq range."""
    document = {
        "creditor": creditor,
        "first_seq": activities[0].seq,
        "last_seq": activities[-1].seq,
        "activities": [ActivityOut.of(activity).model_dump(mode="json") for activity in activities],
    }
    return json.dumps(document, ensure_ascii=False).encode()


class Webhook:
    """POSTs JSON to one creditor URL: retries timeouts, connection errors, 408/425/429 and 5xx with backoff."""

    def __init__(self, url: str, token: str | None, *, attempts: int, timeout_s: float, backoff_s: float) -> None:
        self.url = url
        self._headers = {"Content-Type": "application/json"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self._attempts, self._timeout_s, self._backoff_s = attempts, timeout_s, backoff_s

    def deliver(self, body: bytes, idempotency_key: str) -> None:
        headers = self._headers | {"Idempotency-Key": idempotency_key}
        problem = ""
        for attempt in range(self._attempts):
            if attempt:
                time.sleep(self._backoff_s * 2 ** (attempt - 1))
            try:
                response = httpx.post(self.url, content=body, headers=headers, timeout=self._timeout_s)
            except httpx.HTTPError as exc:
                problem = type(exc).__name__
                continue
            if response.is_success:
                return
            problem = f"HTTP {response.status_code}"
            if response.status_code not in _RETRYABLE:
                break
        raise WebhookFailed(f"webhook {display(self.url)} refused the export ({problem}) after {attempt + 1} tries")

    def probe(self, timeout_s: float) -> str | None:
        """``None`` when the URL answers HTTP below 500 (any method may be refused), else what went wrong."""
        try:
            response = httpx.request("OPTIONS", self.url, headers=self._headers, timeout=timeout_s)
        except httpx.HTTPError as exc:
            return f"webhook {display(self.url)} unreachable: {type(exc).__name__}"
        if response.status_code >= 500:
            return f"webhook {display(self.url)} answers HTTP {response.status_code}"
        return None
