"""Configuration of the smpp SMS gateway."""

from __future__ import annotations

from pydantic import Field, SecretStr

from cartera.plugin import PluginConfig


class SmppConfig(PluginConfig):
    host: str = Field(description="The SMSC's host name or address.")
    port: int = Field(default=2775, ge=1, le=65535, description="The SMSC's SMPP port.")
    system_id: str = Field(min_length=1, max_length=15, description="The account the carrier gave (bind system_id).")
    password: SecretStr = Field(description='The account\'s password (at most 8 characters); write it as "${ENV_VAR}".')
    system_type: str = Field(default="", max_length=12, description="bind system_type, when the carrier asks for one.")
    source_addr: str = Field(
        min_length=1, max_length=20, description="The sender: a short code, a number or an alphanumeric name."
    )
    source_addr_ton: int = Field(
        default=5, ge=0, le=6, description="TON of source_addr: 5 alphanumeric, 1 international, 3 network-specific."
    )
    source_addr_npi: int = Field(default=0, ge=0, le=18, description="NPI of source_addr: 0 unknown, 1 ISDN (E.164).")
    dest_addr_ton: int = Field(default=1, ge=0, le=6, description="TON of destinations (1: international).")
    dest_addr_npi: int = Field(default=1, ge=0, le=18, description="NPI of destinations (1: ISDN / E.164).")
    messages_per_second: float = Field(
        default=10.0, gt=0, le=10_000, description="The carrier's agreed rate: submit_sm PDUs (parts) per second."
    )
    burst: int = Field(default=1, ge=1, le=10_000, description="submit_sm PDUs that may go out back to back.")
    enquire_link_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Idle seconds before an enquire_link keepalive; no answer drops the link.",
    )
    response_timeout_s: float = Field(
        default=10.0, gt=0, le=300, description="Seconds to wait for a bind, submit_sm or enquire_link response."
    )
    submit_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Seconds send() takes at most (a bound link through reconnects, late answers) before failing.",
    )
    reconnect_min_s: float = Field(
        default=1.0, gt=0, le=3600, description="First wait before rebinding after a failure."
    )
    reconnect_max_s: float = Field(
        default=60.0, gt=0, le=3600, description="Longest wait between rebind attempts (doubling)."
    )
    resubmit_in_doubt: bool = Field(
        default=False,
        description="A part sent whose submit_sm_resp was lost with the connection is in doubt: false (default) "
        "fails it rather than risk a duplicate; true resubmits it after the rebind (at least once). An answer "
        "later than response_timeout_s on a live session is waited for then, never answered by a copy.",
    )
    fsync: bool = Field(
        default=True, description="fsync the submit ledger before each submit_sm is written (crash-safe)."
    )
    ledger_retention_h: float = Field(
        default=168.0,
        gt=0,
        le=24 * 366,
        description="Hours a message stays in the submit ledger (idempotent send, receipts).",
    )
