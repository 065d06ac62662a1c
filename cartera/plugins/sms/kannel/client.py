"""HTTP to Kannel: smsbox's ``sendsms`` and bearerbox's status page, credentials never in a log or an error.

Kannel takes its credentials in the URL query, so every text this module puts into an exception or a
detail passes :meth:`KannelClient.redact` first, and so does each line urllib3 and uvicorn's access log write
(request URLs: sendsms with the password, Kannel's callbacks with the token).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from urllib.parse import quote, quote_plus

import urllib3

from cartera.plugin import MASK
from cartera.plugins.sms.kannel.config import KannelConfig

SENDSMS_PATH = "/cgi-bin/sendsms"
_URL_LOGGERS = ("urllib3.connectionpool", "uvicorn.access")
STATUS_PATH = "/status.txt"


class KannelUnavailable(Exception):
    """smsbox or bearerbox did not answer (refused, timed out, closed): its message is safe to log."""


@dataclass(frozen=True, slots=True)
class Reply:
    """What a Kannel box answered: the HTTP status and the one-line body (``0: Accepted for delivery``)."""

    status: int
    body: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class _RedactingFilter(logging.Filter):
    """Masks a client's credentials in the records of the loggers that write request URLs."""

    def __init__(self, client: KannelClient) -> None:
        super().__init__()
        self._client = client

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self._client.redact(record.getMessage()), None
        return True


class KannelClient:
    """A pooled HTTP client for one Kannel (urllib3: with concurrent senders it keeps up with Kannel's own
    client, where httpx managed half of it); thread-safe."""

    def __init__(self, config: KannelConfig) -> None:
        self.config = config
        self._http = urllib3.PoolManager(
            num_pools=2, maxsize=config.max_connections, timeout=urllib3.Timeout(total=config.timeout_s), retries=False
        )
        secrets = [config.username, config.password.get_secret_value()]
        secrets += [s.get_secret_value() for s in (config.status_password, config.callback_token) if s is not None]
        forms = {form for secret in secrets if secret for form in (secret, quote(secret, safe=""), quote_plus(secret))}
        self._secrets = sorted(forms, key=len, reverse=True)
        self._log_filter = _RedactingFilter(self)
        for name in _URL_LOGGERS:
            logging.getLogger(name).addFilter(self._log_filter)

    def close(self) -> None:
        self._http.clear()
        for name in _URL_LOGGERS:
            logging.getLogger(name).removeFilter(self._log_filter)

    def redact(self, text: str) -> str:
        """``text`` with the configured username, passwords and token masked (plain and URL-encoded)."""
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def sendsms(self, params: dict[str, str]) -> Reply:
        """One ``sendsms`` request as the configured user with ``params`` (to, text, dlr-url...)."""
        query = {"username": self.config.username, "password": self.config.password.get_secret_value(), **params}
        return self._get(f"{self.config.smsbox_url}{SENDSMS_PATH}", query, "smsbox")

    def bearerbox_status(self) -> Reply:
        """bearerbox's plain-text status page (``Status: running...``, one line per SMSC connection)."""
        if self.config.status_url is None:
            raise ValueError("no status_url configured")
        password = self.config.status_password.get_secret_value() if self.config.status_password else ""
        return self._get(f"{self.config.status_url}{STATUS_PATH}", {"password": password}, "bearerbox")

    def _get(self, url: str, params: dict[str, str], box: str) -> Reply:
        try:
            response = self._http.request("GET", url, fields=params)
        except urllib3.exceptions.HTTPError as exc:
            problem = str(exc) or type(exc).__name__
            raise KannelUnavailable(self.redact(f"{box} at {url} did not answer: {problem}")) from None
        return Reply(response.status, self.redact(response.data.decode("utf-8", "replace").strip()))
