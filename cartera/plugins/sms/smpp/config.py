"""Configuration of the smpp SMS gateway."""

from __future__ import annotations

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from cartera.plugin import PluginConfig

#: The longest password a bind carries: SMPP 3.4 section 4.1.1 gives it 9 octets with the NUL, one a character
#: (smpplib writes Latin-1, and cuts a longer one silently: the bind then failed with a password nobody wrote).
PASSWORD_MAX = 8


def answer_room_s(response_timeout_s: float, submit_timeout_s: float) -> float:
    """What a send keeps of submit_timeout_s for a part's answer after its turn: response_timeout_s, at most half."""
    return min(response_timeout_s, submit_timeout_s / 2)


class SmppConfig(PluginConfig):
    host: str = Field(description="The SMSC's host name or address.")
    port: int = Field(default=2775, ge=1, le=65535, description="The SMSC's SMPP port.")
    system_id: str = Field(min_length=1, max_length=15, description="The account the carrier gave (bind system_id).")
    password: SecretStr = Field(
        description='The account\'s password (at most 8 Latin-1 characters); write it as "${ENV_VAR}".'
    )
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
        default=10.0,
        ge=0.1,
        le=10_000,
        description="The carrier's agreed rate: submit_sm PDUs (parts) per second; one every 10 s at the least, "
        "and with response_timeout_s (at most half of submit_timeout_s) for its answer no more apart than "
        "submit_timeout_s. A text whose parts do not all get their turns that early is refused whole, before "
        "its first part.",
    )
    burst: int = Field(default=1, ge=1, le=10_000, description="submit_sm PDUs that may go out back to back.")
    enquire_link_s: float = Field(
        default=30.0,
        ge=1,
        le=3600,
        description="Idle seconds before an enquire_link keepalive (1 at the least); no answer drops the link.",
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
        default=60.0,
        gt=0,
        le=3600,
        description="Longest wait between rebind attempts (doubling), not less than reconnect_min_s.",
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
        ge=24,
        le=24 * 366,
        description="Hours a message stays in the submit ledger (idempotent send, receipts); a day at the least, as "
        "receipts come up to the SMSC's validity period after the text.",
    )

    @field_validator("password")
    @classmethod
    def _password_fits_a_bind(cls, password: SecretStr) -> SecretStr:
        """At most :data:`PASSWORD_MAX` Latin-1 characters; the error shows no character of it."""
        value = password.get_secret_value()
        if len(value) > PASSWORD_MAX:
            raise ValueError(f"is {len(value)} characters; SMPP 3.4 carries at most {PASSWORD_MAX}")
        if any(ord(char) > 0xFF for char in value):
            raise ValueError("holds a character outside Latin-1: a bind carries Latin-1 characters only")
        return password

    @field_validator("submit_timeout_s")
    @classmethod
    def _a_part_gets_its_turn_in_time(cls, submit_timeout_s: float, info: ValidationInfo) -> float:
        """A text of one part after another, or of two parts on an idle link (``burst`` at least 1), gets its turns
        within submit_timeout_s, each part keeping :func:`answer_room_s` for its answer: the rule a send applies
        before writing a text's first part (it refuses the text whole when its last part's turn comes later)."""
        rate = info.data.get("messages_per_second")
        if rate is None:
            return submit_timeout_s
        if 1 / rate > submit_timeout_s:
            raise ValueError(
                f"messages_per_second ({rate:g}) gives one part every {1 / rate:g}s, longer than submit_timeout_s "
                f"({submit_timeout_s:g}s): a text waiting for its turn would always fail"
            )
        response = info.data.get("response_timeout_s")
        room = answer_room_s(response, submit_timeout_s) if response is not None else 0.0
        if 1 / rate + room > submit_timeout_s:
            raise ValueError(
                f"messages_per_second ({rate:g}) gives one part every {1 / rate:g}s, and {room:g}s for its answer "
                f"(response_timeout_s, at most half of submit_timeout_s) is more than submit_timeout_s "
                f"({submit_timeout_s:g}s): a text behind another would always be refused"
            )
        return submit_timeout_s

    @field_validator("reconnect_max_s")
    @classmethod
    def _backoff_grows(cls, reconnect_max_s: float, info: ValidationInfo) -> float:
        least = info.data.get("reconnect_min_s")
        if least is not None and reconnect_max_s < least:
            raise ValueError(f"is less than reconnect_min_s ({least:g}): the first wait would be the longest")
        return reconnect_max_s
