"""What an agent records at the end of a conversation: a code from the portfolio's list, each code with flags that
say what it means (right party, promise, callback, cease contact...) and so what the workspace does with it."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from datetime import datetime

from cartera.core.models import DispositionCode


class Flag(enum.StrEnum):
    """What a disposition code means; :class:`cartera.workspace.service.WorkspaceService` acts on each."""

    HUMAN = "human"  #: a person answered
    RIGHT_PARTY = "right_party"  #: that person is the debtor: a conversation (Reg F) and a contact (KPIs)
    THIRD_PARTY = "third_party"  #: someone else: the debt may not be disclosed, no conversation with the debtor
    PROMISE = "promise"  #: a promise to pay (amount and date, or instalments) comes with it
    CALLBACK = "callback"  #: a callback time the debtor chose comes with it
    CEASE_CONTACT = "cease_contact"  #: the debtor asked to stop: no further contact about the account
    DISPUTE = "dispute"  #: the debtor disputes the debt: contact stops until the creditor answers
    WRONG_NUMBER = "wrong_number"  #: the number is not the debtor's: it is retired
    DECEASED = "deceased"  #: the debtor died: no further contact about the account


#: Flags that stop contact about the account, and the word the compliance gate reads as its status.
STOPS: dict[Flag, str] = {Flag.CEASE_CONTACT: "ceased", Flag.DISPUTE: "disputed", Flag.DECEASED: "deceased"}
#: Codes the workspace records itself when the agent could not: never offered to agents.
WRAP_UP_TIMEOUT = "wrap_up_timeout"
BROWSER_CLOSED = "browser_closed"
_CODE = re.compile(r"[a-z][a-z0-9_]{0,31}")
_CONFLICTS = (
    (Flag.RIGHT_PARTY, Flag.THIRD_PARTY),
    (Flag.RIGHT_PARTY, Flag.WRONG_NUMBER),
    (Flag.PROMISE, Flag.CEASE_CONTACT),
    (Flag.PROMISE, Flag.DISPUTE),
)


@dataclass(frozen=True)
class CodeSpec:
    """One disposition code: its labels (Spanish, English) and flags; ``system`` codes are not offered to agents."""

    code: str
    label_es: str
    label_en: str
    flags: frozenset[Flag]
    system: bool = False

    def __post_init__(self) -> None:
        if not _CODE.fullmatch(self.code):
            raise ValueError(f"code {self.code!r}: use 1 to 32 of a-z, 0-9 and _, starting with a letter")
        for first, second in _CONFLICTS:
            if first in self.flags and second in self.flags:
                raise ValueError(f"code {self.code!r}: flags {first.value!r} and {second.value!r} contradict")
        needs_right_party = {Flag.PROMISE, Flag.CEASE_CONTACT, Flag.DISPUTE} & self.flags
        if needs_right_party and Flag.RIGHT_PARTY not in self.flags:
            flag = sorted(needs_right_party)[0]
            raise ValueError(f"code {self.code!r}: flag {flag.value!r} needs 'right_party' (only the debtor can)")

    @property
    def right_party(self) -> bool | None:
        """Whether the debtor was reached: ``None`` when the code does not say (counted as a conversation by the
        compliance history, as an answered call without a disposition is; not as a right-party contact)."""
        if Flag.RIGHT_PARTY in self.flags:
            return True
        if self.flags & {Flag.THIRD_PARTY, Flag.WRONG_NUMBER, Flag.DECEASED} or Flag.HUMAN not in self.flags:
            return False
        return None

    @property
    def stop(self) -> str | None:
        """The account status this code puts the account in (no further contact), if any."""
        return next((status for flag, status in STOPS.items() if flag in self.flags), None)


def _code(code: str, es: str, en: str, *flags: Flag, system: bool = False) -> CodeSpec:
    return CodeSpec(code, es, en, frozenset(flags), system)


H, RP = Flag.HUMAN, Flag.RIGHT_PARTY
#: The list every portfolio gets unless the site configures its own (``[sites.X.workspace.portfolios."C/P"]``).
DEFAULT_CODES: tuple[CodeSpec, ...] = (
    _code(DispositionCode.RIGHT_PARTY_CONTACT.value, "Contacto con el titular", "Right party contact", H, RP),
    _code(DispositionCode.PROMISE_TO_PAY.value, "Promesa de pago", "Promise to pay", H, RP, Flag.PROMISE),
    _code(DispositionCode.REFUSED_TO_PAY.value, "Se niega a pagar", "Refused to pay", H, RP),
    _code(DispositionCode.CALLBACK_REQUESTED.value, "Volver a llamar", "Call back", H, Flag.CALLBACK),
    _code(DispositionCode.WRONG_PARTY.value, "Tercero (no es el titular)", "Third party", H, Flag.THIRD_PARTY),
    _code("wrong_number", "Número equivocado", "Wrong number", H, Flag.WRONG_NUMBER),
    _code("dispute", "Disputa la deuda", "Disputes the debt", H, RP, Flag.DISPUTE),
    _code("cease_contact", "Pide no ser contactado", "Cease contact", H, RP, Flag.CEASE_CONTACT),
    _code("deceased", "Titular fallecido", "Deceased", H, Flag.THIRD_PARTY, Flag.DECEASED),
    _code("answering_machine", "Contestador", "Answering machine"),
)
#: Always known, whatever the configured list: what the workspace records when the agent could not.
SYSTEM_CODES: tuple[CodeSpec, ...] = (
    _code(WRAP_UP_TIMEOUT, "Sin tipificar a tiempo", "Wrap-up timed out", H, system=True),
    _code(BROWSER_CLOSED, "Navegador cerrado", "Browser closed", H, system=True),
)


@dataclass(frozen=True)
class SavedDisposition:
    """A disposition as stored: by whom, when, and the promise and callback it made, if any."""

    id: int
    attempt_id: int
    account_ref: str | None
    code: str
    agent: str
    at: datetime
    promise_id: int | None = None
    callback_id: int | None = None
