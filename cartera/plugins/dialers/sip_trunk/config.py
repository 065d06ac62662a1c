"""Settings of the SIP trunk dialer: the trunk and how to authenticate, how to dial, where answered calls go."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import AfterValidator, Field, SecretStr, StringConstraints, model_validator

from cartera.plugin import PluginConfig, RingTimeout, format_template

#: A SIP or SIPS URI, one line, no angle brackets.
SipUri = Annotated[str, StringConstraints(pattern=r"^sips?:[^\s<>\"]+$")]
#: Calls one pjsua Endpoint can hold: the pjsua2-pybind11 wheel's pjproject is built with PJSUA_MAX_CALLS = 4
#: (pjsua caps uaConfig.maxCalls to it), so a trunk runs one Endpoint per 4 calls, each in a process of its own.
CALLS_PER_ENGINE = 4
MAX_CALLS = 120


def _sip_uri(value: str) -> str:
    if not value.startswith(("sip:", "sips:")) or any(char in value for char in " <>\r\n"):
        raise ValueError("must be a sip: or sips: URI, e.g. sip:{number}@sbc.example.net")
    return value


class SipTrunkConfig(PluginConfig):
    account_uri: SipUri = Field(
        description="The node's SIP identity at the trunk: From of its calls and, with a registrar, the address "
        "of record it registers, e.g. sip:cobranza@sbc.example.net."
    )
    dial_uri: Annotated[str, format_template("number", "digits"), AfterValidator(_sip_uri)] = Field(
        description="Request-URI of a call: {number} is the E.164 number (+57...), {digits} the same without "
        "'+', e.g. sip:{digits}@sbc.example.net."
    )
    queue_uri: SipUri = Field(description="Where an answered call is sent by REFER: the site's agents' queue.")
    registrar: SipUri | None = Field(
        default=None, description="Registrar URI to register account_uri at; unset: an IP-authenticated trunk."
    )
    username: str | None = Field(default=None, min_length=1, description="Digest authentication user.")
    password: SecretStr | None = Field(
        default=None, description='Digest authentication password; write it as "${ENV_VAR}" in sites.toml.'
    )
    realm: str = Field(default="*", min_length=1, description='Digest realm of the credentials ("*": any realm).')
    outbound_proxy: SipUri | None = Field(
        default=None, description="Proxy every request goes through first (sent as a loose route), e.g. the SBC."
    )
    caller_id: Annotated[str, StringConstraints(pattern=r"^\+?[0-9A-Za-z._-]+$")] | None = Field(
        default=None,
        description="User part of the From presented to debtors (e.g. 6015550000), unless the call sets one; "
        "unset: account_uri's.",
    )
    codecs: tuple[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9./-]+$")], ...] = Field(
        default=("PCMU/8000", "PCMA/8000"),
        min_length=1,
        description="Audio codecs offered, in order of preference (pjsua codec ids or prefixes: PCMU/8000, "
        "G722, opus). They apply to the node's one SIP engine, shared by every sip_trunk dialer of the process.",
    )
    max_calls: int = Field(
        default=30,
        ge=1,
        le=MAX_CALLS,
        description=f"Calls in flight at most (the trunk's channels); one SIP worker process per {CALLS_PER_ENGINE}.",
    )
    ring_timeout_s: RingTimeout = Field(
        default=30.0, description="Seconds a call rings before it is cancelled as not answered (15 at least)."
    )
    transfer_timeout_s: float = Field(
        default=15.0,
        gt=0,
        le=300,
        description="Seconds to wait for the queue to take an answered call (the "
        "REFER's final NOTIFY) before hanging it up.",
    )
    local_address: str = Field(default="0.0.0.0", min_length=1, description="Local IP address SIP binds to.")
    local_port: int = Field(
        default=5060,
        ge=0,
        le=65535,
        description="Local UDP port for SIP of the first worker process; the next ones use the following ports "
        "(0: any free ports).",
    )
    register_expires_s: int = Field(default=300, ge=30, le=86400, description="Registration lifetime asked for.")
    register_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="Seconds start() waits for the first registration to be accepted."
    )
    check_timeout_s: float = Field(default=3.0, gt=0, le=60, description="Seconds check() waits for OPTIONS.")
    stop_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="Seconds stop() waits for the calls it hung up to end."
    )
    attempt_header: Annotated[str, StringConstraints(pattern=r"^(X-[A-Za-z0-9-]+)?$")] = Field(
        default="X-Cartera-Attempt",
        description='SIP header carrying the attempt id on each INVITE (the carrier\'s records can name it); "" '
        "sends none.",
    )

    @model_validator(mode="after")
    def _credentials(self) -> Self:
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together (digest authentication)")
        if self.registrar is not None and self.username is None:
            raise ValueError("a registrar needs username and password")
        return self
