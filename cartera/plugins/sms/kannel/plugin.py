"""The Kannel SMS gateway adapter: submits through smsbox, takes delivery reports and MO on the node's HTTP server.

Each text is submitted with a fresh reference (the gateway id: smsbox's ``sendsms`` answers no id of its
own) and a ``dlr-url`` back to ``/plugins/sms/kannel/dlr`` carrying the message id, that reference and
Kannel's report type. MO reaches ``/plugins/sms/kannel/mo`` from an smsbox ``sms-service`` whose ``get-url``
is :data:`MO_QUERY` appended to the node's URL (see docs/plugins.md).
"""

from __future__ import annotations

import hmac
import logging
import uuid
from typing import Annotated, Any, ClassVar
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import PlainTextResponse

from cartera.plugin import (
    IN_DOUBT,
    PLUGIN_PREFIX,
    UCS2,
    AdapterCapabilities,
    AdapterRegistry,
    CheckResult,
    DeliveryReport,
    InboundSms,
    PluginConfig,
    PluginContext,
    SmsGateway,
    SmsMessage,
    SmsState,
    SmsSubmitResult,
    decodes_query,
    event,
    hookimpl,
    local_request,
    segment_count,
    sms_encoding,
    unkeepable,
)
from cartera.plugins.sms.kannel.client import KannelClient, KannelUnavailable
from cartera.plugins.sms.kannel.config import KannelConfig

log = logging.getLogger("cartera.sms.kannel")

ROUTES = "/kannel"
#: The query of the smsbox sms-service get-url for MO: sender, receiver, Kannel's id, coding, charset, raw text.
MO_QUERY = "from=%p&to=%P&id=%I&coding=%c&charset=%C&text=%b"
#: Kannel's DLR types (the dlr-url's %d) and the state each means.
DLR_STATES: dict[int, SmsState] = {
    1: SmsState.DELIVERED,  # delivered to the phone
    2: SmsState.FAILED,  # not delivered to the phone
    4: SmsState.SUBMITTED,  # buffered at the SMSC, still trying
    8: SmsState.SUBMITTED,  # accepted by the SMSC
    16: SmsState.FAILED,  # rejected by the SMSC
}


def dlr_state(dlr_type: int, smsc_status: str) -> SmsState | None:
    """The state a Kannel report means; a failure whose SMSC receipt says ``stat:EXPIRED`` is EXPIRED."""
    state = DLR_STATES.get(dlr_type)
    if state is SmsState.FAILED and "EXPIRED" in smsc_status.upper():
        return SmsState.EXPIRED
    return state


#: The charsets Kannel names in an MO's ``%C`` (its own: UTF-8 for 7-bit, 8-BIT, UTF-16BE for UCS-2; others an SMSC
#: module or an ``alt-charset`` sets), as Python codecs. Any other, such as ``punycode`` or ``idna`` from an HTTP
#: SMSC upstream, is refused: those codecs are no SMS text encoding and fail in ways a text codec does not.
MO_CHARSETS: dict[str, str] = {
    "UTF-8": "utf-8",
    "UTF8": "utf-8",
    "UTF-16BE": "utf-16-be",
    "UTF-16-BE": "utf-16-be",
    "UCS-2": "utf-16-be",
    "UCS2": "utf-16-be",
    "UCS-2BE": "utf-16-be",
    "8-BIT": "latin-1",  # the bytes as the phone sent them
    "BINARY": "latin-1",
    "ISO-8859-1": "latin-1",
    "ISO8859-1": "latin-1",
    "LATIN1": "latin-1",
    "LATIN-1": "latin-1",
    "ISO-8859-15": "iso8859-15",
    "WINDOWS-1252": "cp1252",
    "CP1252": "cp1252",
    "US-ASCII": "ascii",
    "ASCII": "ascii",
}


class UnsupportedCharset(ValueError):
    """An MO whose charset is none of :data:`MO_CHARSETS`: refused (400), nothing stored."""


def mo_encoding(coding: str, charset: str) -> str:
    """The Python codec of an MO: its charset, else UTF-16BE for UCS-2 (coding 2) and UTF-8 for the rest."""
    if not charset:
        return "utf-16-be" if coding == "2" else "utf-8"
    encoding = MO_CHARSETS.get(charset.strip().upper())
    if encoding is None:
        raise UnsupportedCharset(f"charset {charset[:40]!r} is not one Kannel sends: {', '.join(MO_CHARSETS)}")
    return encoding


def decode_mo_text(raw: bytes, coding: str, charset: str) -> str:
    """The text of an MO as smsbox passes it (``%b``): UCS-2 (coding 2) as UTF-16BE, else its charset or UTF-8."""
    encoding = mo_encoding(coding, charset)
    try:
        return raw.decode(encoding)
    except (LookupError, UnicodeDecodeError):
        return raw.decode("latin-1")


class KannelGateway(SmsGateway[KannelConfig]):
    """Texts through Kannel's smsbox HTTP interface; Kannel calls the node back with reports and MO."""

    name: ClassVar[str] = "kannel"
    config_model: ClassVar[type[PluginConfig]] = KannelConfig
    capabilities: ClassVar[AdapterCapabilities] = AdapterCapabilities(serves_http=True)

    def __init__(self, config: KannelConfig, context: PluginContext) -> None:
        super().__init__(config, context)
        self._client: KannelClient | None = None

    @property
    def callback_url(self) -> str:
        """Where Kannel reaches this adapter's routes on the node."""
        return f"{self.context.base_url}{PLUGIN_PREFIX}/sms{ROUTES}"

    def start(self) -> None:
        self._client = KannelClient(self.config)

    def stop(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _http(self) -> KannelClient:
        if self._client is None:
            raise RuntimeError("the kannel gateway is not started")
        return self._client

    # --- sending ------------------------------------------------------------------------------

    def send(self, message: SmsMessage) -> SmsSubmitResult:
        ref = uuid.uuid4().hex
        encoding = sms_encoding(message.text)
        params = {
            "to": message.phone,
            "text": message.text,
            "charset": "UTF-8",
            "coding": "2" if encoding == UCS2 else "0",
            "dlr-mask": str(self.config.dlr_mask),
            "dlr-url": self._dlr_url(message.message_id, ref),
        }
        optional = {"from": self.config.sender, "smsc": self.config.smsc_id, "validity": self.config.validity_minutes}
        params.update({key: str(value) for key, value in optional.items() if value is not None})
        try:
            reply = self._http().sendsms(params)
        except KannelUnavailable as exc:  # not retried: smsbox may have taken it; its report (with ref) still finds it
            # A request written whole with no answer in time is in doubt: Kannel's report tells what became of it (its
            # SMS activity too); one never sent (refused, unreachable) is plainly failed.
            detail = f"{IN_DOUBT}{exc}" if exc.sent else str(exc)
            return SmsSubmitResult(message.message_id, SmsState.FAILED, ref, detail)
        if not reply.ok:
            detail = f"smsbox refused the text (HTTP {reply.status}): {reply.body}"
            return SmsSubmitResult(message.message_id, SmsState.FAILED, None, detail)
        detail = f"{segment_count(message.text)} {encoding} segment(s); smsbox: {reply.body}"
        return SmsSubmitResult(message.message_id, SmsState.SUBMITTED, ref, detail)

    def _dlr_url(self, message_id: int, ref: str) -> str:
        # Kannel substitutes %d (type), %A (the SMSC's answer or receipt) and %F (the SMSC's message id).
        url = f"{self.callback_url}/dlr?msg={message_id}&ref={ref}&type=%d&smsc_status=%A&smsc_id=%F"
        token = self.config.callback_token
        return url + (f"&token={token.get_secret_value()}" if token else "")

    # --- checking -----------------------------------------------------------------------------

    def check(self) -> CheckResult:
        client = KannelClient(self.config) if self._client is None else self._client
        try:
            problem = self._check_smsbox(client) or self._check_bearerbox(client)
        except KannelUnavailable as exc:
            problem = str(exc)
        finally:
            if client is not self._client:
                client.close()
        if problem:
            return CheckResult(False, problem)
        status = "; bearerbox running with an SMSC online" if self.config.status_url else ""
        return CheckResult(True, f"smsbox at {self.config.smsbox_url} accepts the sendsms user{status}")

    def _check_smsbox(self, client: KannelClient) -> str | None:
        # A sendsms without a receiver sends nothing: smsbox checks the user first, then rejects the request.
        reply = client.sendsms({})
        if reply.status == 400 and "receiver" in reply.body.lower():
            return None
        if reply.status in (401, 403):
            return f"smsbox at {self.config.smsbox_url} refused the sendsms user: {reply.body}"
        return f"smsbox at {self.config.smsbox_url} answered HTTP {reply.status}: {reply.body!r}"

    def _check_bearerbox(self, client: KannelClient) -> str | None:
        if self.config.status_url is None:
            return None
        reply = client.bearerbox_status()
        if not reply.ok or "Status: running" not in reply.body:
            return f"bearerbox at {self.config.status_url} is not running: HTTP {reply.status} {reply.body[:80]!r}"
        connections = reply.body.partition("SMSC connections:")[2].strip().splitlines()
        if not any("(online" in line for line in connections):
            return (
                f"bearerbox at {self.config.status_url} has no SMSC connection online ({len(connections)} configured)"
            )
        return None

    # --- callbacks ----------------------------------------------------------------------------

    def http_router(self) -> APIRouter:
        router = APIRouter(prefix=ROUTES)

        @router.get("/dlr", response_class=PlainTextResponse)
        def dlr(
            *,
            msg: int,
            ref: str,
            dlr_type: Annotated[int, Query(alias="type")],
            smsc_status: str = "",
            smsc_id: str = "",
            request: Request,
            token: str = "",
        ) -> str:
            self._authorize(token, request)
            state = dlr_state(dlr_type, smsc_status)
            if state is None:
                raise HTTPException(400, f"unknown Kannel DLR type {dlr_type}")
            raw = f"kannel type {dlr_type}" + (f": {smsc_status}" if smsc_status else "")
            raw += f" (smsc id {smsc_id})" if smsc_id else ""
            report = DeliveryReport(state, ref, self.context.clock.now(), message_id=msg, raw_status=raw)
            self.context.report_delivery(report)
            return "ok"

        @router.get("/mo", response_class=PlainTextResponse)
        @decodes_query("text")  # raw bytes (%b): UCS-2's UTF-16BE holds a zero byte for every Latin character
        def mo(request: Request) -> str:
            query = parse_qs(request.scope["query_string"].decode("ascii"), keep_blank_values=True, encoding="latin-1")
            first = {key: values[0] for key, values in query.items()}
            self._authorize(first.get("token", ""), request)
            sender = first.get("from", "").strip()
            if not sender or "text" not in first:
                raise HTTPException(400, "an MO needs from= and text= (get-url ...?" + MO_QUERY + ")")
            raw = first["text"].encode("latin-1")
            try:
                text = decode_mo_text(raw, first.get("coding", ""), first.get("charset", ""))
            except UnsupportedCharset as exc:
                raise HTTPException(400, str(exc)) from exc
            problem = unkeepable(text)  # what the node's guard refuses in any other request's text
            if problem:
                raise HTTPException(400, f"{problem} in the request")
            gateway_id = first.get("id") or None
            self.context.report_inbound(InboundSms(sender, text, self.context.clock.now(), gateway_id))
            event(log, "kannel.mo", gateway_id=gateway_id)
            return ""

        return router

    def _authorize(self, token: str, request: Request) -> None:
        """A callback carries the ``callback_token``; without one configured, only Kannel on this host may call
        (anyone else could opt any number out, or mark texts delivered)."""
        expected = self.config.callback_token
        if expected is None:
            if not local_request(request):
                raise HTTPException(403, "a callback from another host needs the site's callback_token")
        elif not hmac.compare_digest(token.encode(), expected.get_secret_value().encode()):
            raise HTTPException(403, "bad or missing token")


@hookimpl
def cartera_register_sms_gateways(register: AdapterRegistry[SmsGateway[Any]]) -> None:
    register.add(KannelGateway)
