"""The typed contract of a vendor adapter, one abstract base class per kind.

A plugin registers adapter *classes* by name through the registry hooks in :mod:`cartera.core.hookspecs`; a site
picks one per kind in ``sites.toml`` and core instantiates it as ``Adapter(config, context)``, where
``config`` is an instance of the adapter's ``config_model`` already validated from the site's section.

Threading: core may call an adapter from several threads (scheduler jobs, the CLI); the ``report_*``
methods of :class:`PluginContext` are thread-safe and may be called from a vendor library's own threads.
"""

from __future__ import annotations

import abc
import logging
import string
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, BinaryIO, ClassVar, Generic, Protocol, TypeVar

from fastapi import APIRouter
from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, ValidationInfo

from cartera.core.clock import Clock
from cartera.core.errors import Unsupported
from cartera.core.models import (
    Activity,
    AgentConnected,
    AssignmentBatch,
    CallRequest,
    CallResult,
    CheckResult,
    Checksums,
    DeliveryReport,
    DeliveryScope,
    InboundSms,
    Recording,
    RowError,
    Seat,
    SmsMessage,
    SmsState,
    SmsSubmitResult,
    StoredObject,
    UnfinishedCall,
)


class PluginConfig(BaseModel):
    """Base of every adapter's config model: unknown keys are errors, values are immutable, numbers finite.
    ``sites.toml`` is validated strictly (:func:`cartera.core.config.load_site`): TOML's own types, no "12" for 12."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    #: keys of the directories that are this site's alone (a creditor's inbox...): when ``sites.toml`` is loaded,
    #: another site's such directory that is the same as one of them, inside or around it, is refused
    exclusive_dirs: ClassVar[tuple[str, ...]] = ()
    #: keys naming the server ``exclusive_dirs`` are on when they are remote (``username``, ``host``, ``port``):
    #: then another site's directory clashes only on the same server (a ``host`` key compared in lower case without
    #: its trailing dot), the paths normalised; a relative and an absolute path on one server are refused too
    exclusive_server: ClassVar[tuple[str, ...]] = ()
    #: of ``exclusive_dirs``, those that may lie inside another of them (its key), never equal to it: ``archive``
    #: inside ``inbox`` (its default place). Any other two of a site's exclusive directories (and its ``data_dir``
    #: inside one of them) overlapping is refused: a node would read its own exports as a creditor's files
    nested_dirs: ClassVar[dict[str, str]] = {}


ConfigT = TypeVar("ConfigT", bound=PluginConfig)


def _resolve_path(value: Path, info: ValidationInfo) -> Path:
    base = (info.context or {}).get("base_dir")
    return value if value.is_absolute() or base is None else Path(base) / value


#: A path in a config model: relative paths are taken from the directory of ``sites.toml``.
ConfigPath = Annotated[Path, AfterValidator(_resolve_path)]

#: Validation context key: set when a site's config is loaded to run it, so :data:`WritableDir` is checked.
CHECK_DIRS = "check_dirs"


def _creatable(value: Path, info: ValidationInfo) -> Path:
    if not (info.context or {}).get(CHECK_DIRS):
        return value
    existing = value
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"cannot create or write this directory: {existing} is not a directory")
    try:
        tempfile.TemporaryDirectory(dir=existing, prefix=".cartera-check-").cleanup()
    except OSError as exc:
        raise ValueError(f"cannot create or write this directory: {existing}: {exc.strerror or exc}") from None
    return value


#: A directory core or the plugin creates when missing and writes to: when a site's config is loaded, the
#: nearest existing ancestor must be a directory where one can be created (not a file, not ``/proc``).
WritableDir = Annotated[ConfigPath, AfterValidator(_creatable)]


def _file_mode(value: Any) -> int:
    if not isinstance(value, str) or len(value) not in (3, 4) or any(digit not in "01234567" for digit in value):
        raise ValueError('write the mode as octal text, "0600" or "0640"')
    mode = int(value, 8)
    if mode & 0o600 != 0o600 or mode & ~0o660:
        raise ValueError("the owner reads and writes; the group may read or write; other users get nothing")
    return mode


#: The permission bits of files written for a creditor to pick up (``"0640"``: its pick-up account, in the
#: service's group, reads them); every other file the node writes is its service user's alone (0600).
FileMode = Annotated[int, BeforeValidator(_file_mode), PlainSerializer(lambda mode: f"{mode:04o}", return_type=str)]


class PluginContext(Protocol):
    """What core gives an adapter: its site, clock, a private data directory and the report callbacks."""

    @property
    def site(self) -> str: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def data_dir(self) -> Path:
        """A directory owned by this adapter (created by core), for spools, outboxes and state files."""
        ...

    @property
    def log(self) -> logging.Logger: ...

    def report_call(self, result: CallResult) -> None:
        """A dialer reports the end of a call it was asked to place: exactly once per attempt."""

    def report_recording(self, recording: Recording) -> None:
        """A dialer reports a finished recording file; core catalogs it for archival."""

    def report_agent_connected(self, event: AgentConnected) -> None:
        """A dialer reports that an answered call was connected to an agent: once per attempt, before the call's
        end is reported; core records the agent on the attempt and pops the debtor on the agent's screen."""

    def report_delivery(self, report: DeliveryReport) -> None:
        """An SMS gateway reports a delivery receipt."""

    def report_inbound(self, message: InboundSms) -> None:
        """An SMS gateway reports a message a debtor sent (MO); core handles opt-out keywords."""

    @property
    def base_url(self) -> str:
        """The node's HTTP server as peers reach it (``http://127.0.0.1:8080``), for callback URLs such as a
        gateway's delivery-report URL; routes come from :meth:`Adapter.http_router`."""
        ...

    def exported_activities(self, creditor: str, after: int, limit: int) -> list[Activity]:
        """Up to ``limit`` of ``creditor``'s activities that core's export has reached (its cursor, the batch being
        handed to :meth:`CrmSync.export` included), with seq above ``after``, in seq order: read from core's
        store, so an adapter that lets creditors pull them keeps no copy of its own."""
        ...


class ContextBase:
    """What every :class:`PluginContext` holds the same way: the site's name, the clock, the adapter's folder
    (created here) and its logger; a context adds the reports and the rest."""

    def __init__(self, site: str, clock: Clock, data_dir: Path, log: logging.Logger) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self._site, self._clock, self._data_dir, self._log = site, clock, data_dir, log

    @property
    def site(self) -> str:
        return self._site

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def log(self) -> logging.Logger:
        return self._log


_METHOD = "method"


def _overrides(*methods: str) -> bool:
    """A capability that is the adapter's own ``methods``: declared exactly when the adapter overrides them."""
    return field(default=False, metadata={_METHOD: methods})


@dataclass(frozen=True, kw_only=True)
class AdapterCapabilities:
    """What an adapter does beyond its kind's required methods: the class attribute ``capabilities`` declares it,
    one subclass per kind (this class itself for SMS gateways). Everything is off by default.

    A capability that is an optional method is declared exactly when the adapter overrides that method:
    registration refuses the adapter otherwise. Core and the conformance kits read the declaration."""

    #: Serves routes on the node's HTTP server: overrides :meth:`Adapter.http_router`.
    serves_http: bool = _overrides("http_router")

    @classmethod
    def methods(cls) -> dict[str, tuple[str, ...]]:
        """Each capability that is one or more optional methods, with the methods' names."""
        return {item.name: item.metadata[_METHOD] for item in fields(cls) if _METHOD in item.metadata}


@dataclass(frozen=True, kw_only=True)
class DialerCapabilities(AdapterCapabilities):
    """What a :class:`Dialer` does beyond placing calls and reporting their ends."""

    #: Records answered calls and reports each file through ``context.report_recording``.
    records_calls: bool = False
    #: Names the agent who took an answered call in :attr:`CallResult.agent`.
    reports_agents: bool = False
    #: Reports each answered call's connection to an agent through ``context.report_agent_connected``.
    reports_agent_connections: bool = False
    #: Cancels a call being set up or ringing: overrides :meth:`Dialer.cancel`.
    cancels: bool = _overrides("cancel")
    #: Settles the calls a killed run left in flight itself: overrides :meth:`Dialer.reconcile`.
    reconciles: bool = _overrides("reconcile")
    #: Pauses and resumes its agents: overrides :meth:`Dialer.pause_agent` and :meth:`Dialer.resume_agent`.
    pauses_agents: bool = _overrides("pause_agent", "resume_agent")
    #: Connects an answered call to the agent its :attr:`CallRequest.agent` names (an agent it does not know: the
    #: call is reported failed).
    targets_agents: bool = False
    #: Ends a call answered by a person that no agent took in time as :attr:`CallOutcome.ABANDONED`, after the
    #: identification message (other dialers connect it late, or to an agent already busy).
    abandons_calls: bool = False
    #: Tells each of its agents' state, for the campaign's pacing: overrides :meth:`Dialer.seats`.
    reports_seats: bool = _overrides("seats")


@dataclass(frozen=True, kw_only=True)
class RecordingStoreCapabilities(AdapterCapabilities):
    """What a :class:`RecordingStore` does beyond storing, reading and retaining objects."""

    #: Issues expiring credential-free URLs: overrides :meth:`RecordingStore.url`.
    presigned_urls: bool = _overrides("url")


@dataclass(frozen=True, kw_only=True)
class CrmSyncCapabilities(AdapterCapabilities):
    """What a :class:`CrmSync` does beyond reading, fetching, acknowledging, rejecting and exporting."""

    #: Sends the creditor the rows of a delivery that were quarantined: overrides :meth:`CrmSync.report_rejections`.
    rejection_reports: bool = _overrides("report_rejections")
    #: Names the creditors and portfolios it may deliver for: overrides :meth:`CrmSync.delivers`.
    restricts_deliveries: bool = _overrides("delivers")


class Adapter(abc.ABC, Generic[ConfigT]):
    """Common shape: a unique ``name`` per kind, a ``config_model``, a ``check`` for operators, and the
    ``capabilities`` it declares (of its kind's type; the base class declares none)."""

    name: ClassVar[str]
    config_model: ClassVar[type[PluginConfig]]
    capabilities: ClassVar[AdapterCapabilities] = AdapterCapabilities()

    def __init__(self, config: ConfigT, context: PluginContext) -> None:
        self.config = config
        self.context = context

    def start(self) -> None:
        """Connect or open resources. Called once before any other work; may raise to abort the start."""

    def stop(self) -> None:
        """Release resources. Called once at shutdown, after core stopped sending new work."""

    @abc.abstractmethod
    def check(self) -> CheckResult:
        """Reach the vendor (log in, send OPTIONS, list the bucket...) and say whether it works."""

    def http_router(self) -> APIRouter | None:
        """Routes this adapter serves on the node's HTTP server (delivery-report callbacks, a creditor's push
        API), mounted under ``/plugins/{kind}``; ``None`` (the default) serves nothing. Called once, after
        :meth:`start`, while ``run`` serves HTTP. An adapter that overrides it declares ``serves_http``."""
        return None


def recording_key_problem(key: str) -> str | None:
    """Why ``key`` is not a valid recording key (a relative POSIX path of plain components: none empty, ``.``,
    ``..`` or starting with ``.``, which the stores keep for their own files; no backslash), or ``None`` when it is
    one. Core checks the archival ``key_template`` with it; a store refuses such a key."""
    if not key:
        return "it is empty"
    if key.startswith("/"):
        return "it is absolute"
    if "\\" in key:
        return "it contains a backslash"
    for part in key.split("/"):
        if part in ("", ".", ".."):
            return f"it has a {part or 'empty'!r} component"
        if part.startswith("."):
            return f"component {part!r} starts with '.', which is reserved for the archive's own files"
    return None


def template_fields(template: str) -> set[str]:
    """The field names a ``str.format`` template uses; ValueError when it does not parse."""
    try:
        return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}
    except ValueError as exc:
        raise ValueError(f"not a valid template: {exc}") from None


def format_template(*fields: str) -> AfterValidator:
    """Validates a setting that is a ``str.format`` template using only ``fields``, and at least one of them."""
    listed = " or ".join(f"{{{name}}}" for name in fields)

    def check(value: str) -> str:
        used = template_fields(value)
        unknown = used - set(fields)
        if unknown:
            raise ValueError(f"unknown field {{{sorted(unknown)[0]}}} (use {listed})")
        if not used:
            raise ValueError(f"must contain {listed}")
        return value

    return AfterValidator(check)


def dial_string(template: str, phone: str) -> str:
    """A dialer's address template filled for ``phone``: ``{number}`` is the E.164 number (+57...),
    ``{digits}`` the same without '+'."""
    return template.format(number=phone, digits=phone.lstrip("+"))


#: A dialer's predictive over-dialling: calls in flight per available agent.
DialRatio = Annotated[float, Field(ge=1.0, le=3.0)]

#: The shortest ring before an unanswered call is given up: 15 s (47 CFR 64.1200(a)(6)).
MIN_RING_S = 15.0


def _rings_long_enough(seconds: float) -> float:
    if seconds < MIN_RING_S:
        raise ValueError(
            f"{seconds:g} s: a call rings at least {MIN_RING_S:g} s before it is given up as not answered "
            "(47 CFR 64.1200(a)(6)); a test wanting a quick unanswered call dials a busy or rejecting number"
        )
    return seconds


#: A dialer's ring timeout in seconds: at least :data:`MIN_RING_S`, at most 5 minutes.
RingTimeout = Annotated[float, Field(le=300), AfterValidator(_rings_long_enough)]


def dial_slots(available_agents: int, dial_ratio: float) -> int:
    """Calls a dialer may have in flight: available agents times the dial ratio, rounded down. The epsilon
    keeps products like ``100 * 1.15`` (114.99999999999999 in floating point) at 115."""
    return int(available_agents * dial_ratio + 1e-9)


class Dialer(Adapter[ConfigT]):
    """Places calls. Results are asynchronous: ``place_call`` returns at once, the end is reported later."""

    capabilities: ClassVar[DialerCapabilities] = DialerCapabilities()

    @abc.abstractmethod
    def capacity(self) -> int:
        """How many more calls may be placed right now (agents available times dial ratio, minus in flight)."""

    @abc.abstractmethod
    def place_call(self, request: CallRequest) -> None:
        """Start placing the call. Must not block for the call's duration and must never place it twice.

        The end of the call (any outcome, including failure to place it) is reported exactly once through
        ``context.report_call``; a recording, when one was made, through ``context.report_recording``.
        """

    def cancel(self, attempt_id: int) -> bool:
        """Cancel the call of ``attempt_id`` if it has not been answered: core calls it when the account was
        withdrawn or paid while its call was being set up or ringing. Must not block for the call's end.

        Hang the call up (or keep it from being dialled) while it is being set up or rings; never hang up an
        answered call. The end is still reported exactly once through ``context.report_call``: as
        ``CallOutcome.CANCELLED`` (unanswered; the raw cause says what the vendor did) when this returned
        ``True``, even if the debtor's answer crossed the hang-up. Returns ``True`` when the call will end as
        cancelled, ``False`` when the attempt is unknown to this dialer, already answered, already ending for
        another reason (ring timeout, shutdown), or finished. This default cannot cancel: ``False``, the call goes
        on. A dialer that overrides it declares ``cancels``.
        """
        return False

    def reconcile(self, calls: Sequence[UnfinishedCall]) -> None:
        """Settle the calls a previous run of the site's node left in flight: it was killed before their ends
        were reported. ``run`` calls it once, after :meth:`start` and before the first :meth:`place_call`.

        Never dial them again. Report each one's end exactly once through ``context.report_call``: the real end
        when the vendor can still tell (a call still up may be followed and reported when it ends, or by
        :meth:`stop`), else ``call.unknown(raw_cause)`` (``CallOutcome.UNKNOWN``, the cause saying why). Must not
        block for a call's duration. This default can tell nothing: every call ends ``UNKNOWN``. A dialer that
        overrides it declares ``reconciles``.
        """
        for call in calls:
            self.context.report_call(call.unknown(f"{self.name} keeps nothing across node runs: end unknown"))

    def pause_agent(self, agent: str, reason: str) -> None:
        """Offer ``agent`` (its identity at the dialer, as in :class:`AgentConnected`) no call until
        :meth:`resume_agent`: a call already connected to the agent goes on. ``reason`` (a break, training...)
        goes to the vendor where it keeps one. Pacing counts only agents not paused, so :meth:`capacity` drops.

        Idempotent. Raises :class:`cartera.core.errors.UnknownAgent` for an agent the dialer does not serve. This
        default cannot pause: it raises :class:`cartera.core.errors.Unsupported`. A dialer that overrides it and
        :meth:`resume_agent` declares ``pauses_agents``.
        """
        raise Unsupported(f"the {self.name} dialer cannot pause agents")

    def resume_agent(self, agent: str) -> None:
        """Offer ``agent`` calls again after :meth:`pause_agent`. Idempotent; raises
        :class:`cartera.core.errors.UnknownAgent` like it. This default raises :class:`cartera.core.errors.Unsupported`.
        """
        raise Unsupported(f"the {self.name} dialer cannot resume agents")

    def seats(self) -> list[Seat]:
        """Every agent the dialer serves, each with its state now and since when (the site's clock): the campaign's
        progressive and predictive pacing counts, from it, the agents the node's own workspace does not know (an
        agent no workspace user's extension names). Must not block on a call.

        This default cannot tell: it raises :class:`cartera.core.errors.Unsupported`, and those modes count only
        the workspace's agents. A dialer that overrides it declares ``reports_seats``.
        """
        raise Unsupported(f"the {self.name} dialer cannot tell its agents' states")

    @abc.abstractmethod
    def stop(self) -> None:
        """Hang up or finish every call in progress; every placed call has been reported when this returns."""


class RecordingStore(Adapter[ConfigT]):
    """Durable storage for recordings (a directory, an S3 bucket...). Keys are relative POSIX paths."""

    capabilities: ClassVar[RecordingStoreCapabilities] = RecordingStoreCapabilities()

    @abc.abstractmethod
    def put(self, key: str, source: Path, checksums: Checksums) -> StoredObject:
        """Store ``source`` under ``key`` and verify it landed intact.

        Idempotent: storing identical content under an existing key succeeds. Raises
        :class:`cartera.core.errors.IntegrityError` when the stored bytes do not match ``checksums``; nothing
        partial is left visible under ``key``.
        """

    @abc.abstractmethod
    def head(self, key: str) -> StoredObject | None:
        """Describe the object under ``key``, or ``None`` when there is none."""

    @abc.abstractmethod
    def read(self, key: str, sink: BinaryIO) -> None:
        """Write the object's bytes to ``sink``. Raises :class:`cartera.core.errors.ObjectNotFound`."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the object under ``key`` (every version the store keeps); a key holding nothing is fine.

        Raises :class:`cartera.core.errors.ObjectLocked`, deleting nothing, while the object is under retention
        or legal hold (see :meth:`set_retention`).
        """

    @abc.abstractmethod
    def set_retention(self, key: str, retain_until: datetime | None, legal_hold: bool) -> None:
        """Refuse to delete ``key`` before ``retain_until`` and while ``legal_hold`` is on.

        Retention is only ever extended (an earlier date than the current one keeps the current one); the
        legal hold is set or released as given. Raises :class:`cartera.core.errors.ObjectNotFound`.
        """

    def url(self, key: str, expires_s: int) -> str:
        """A URL serving the object's bytes without credentials for ``expires_s`` seconds.

        Raises :class:`cartera.core.errors.ObjectNotFound`; stores that cannot issue expiring URLs raise
        :class:`cartera.core.errors.Unsupported` (this default). A store that overrides it declares
        ``presigned_urls``.
        """
        raise Unsupported(f"the {self.name} recording store cannot issue expiring URLs; use 'recordings get'")

    def max_concurrency(self) -> int:
        """How many transfers the store serves at once (its connection pool): core sizes its upload pool to it."""
        return 4


#: The detail of a text its killed sender left being submitted, of which the gateway can tell nothing.
KILLED_WHILE_SENDING = "unknown: its sender was killed while the gateway took it; it may or may not have gone"
#: How the detail of a ``FAILED`` submit result starts when the gateway handed the text over but had no answer in time:
#: it may have gone. A report the gateway makes for it later (the vendor's late acceptance, then its receipts) is
#: applied, as for a text still being submitted, whether the result carried no gateway id or one (a multi-part SMPP
#: text in doubt on part 2 or later carries part 1's): the detail alone marks it.
IN_DOUBT = "in doubt: "


class SmsGateway(Adapter[ConfigT]):
    """Sends text messages; delivery receipts arrive later through ``context.report_delivery``."""

    @abc.abstractmethod
    def send(self, message: SmsMessage) -> SmsSubmitResult:
        """Submit one message the compliance gate allowed; return the gateway's verdict and id."""

    def settle(self, messages: Sequence[SmsMessage]) -> list[SmsSubmitResult]:
        """What became of ``messages``: texts whose sender (a node, an ``sms`` command) was killed while ``send``
        was under way, so their rows stayed ``queued`` with no gateway id. One result per message, in order; none
        is submitted again (the gate allowed it then, not now). Core calls it once no live process is sending the
        site's texts (:meth:`cartera.contact.texts.TextService.reconcile_texts`). This default cannot ask the
        gateway: each is FAILED, its detail saying whether it went is unknown. A gateway that records its
        submissions (smpp's submit ledger) overrides it."""
        return [
            SmsSubmitResult(message.message_id, SmsState.FAILED, None, KILLED_WHILE_SENDING) for message in messages
        ]


class CrmSync(Adapter[ConfigT]):
    """Exchanges data with one creditor: assignments in, activities out."""

    capabilities: ClassVar[CrmSyncCapabilities] = CrmSyncCapabilities()

    @abc.abstractmethod
    def read_file(self, path: Path) -> AssignmentBatch:
        """Parse an assignment file an operator names (``import FILE``).

        ``items`` may be a lazy iterator; raise :class:`cartera.core.models.FileRejected` (up front or while
        iterating) when the file as a whole is unusable.
        """

    def delivers(self) -> DeliveryScope | None:
        """The creditors and portfolios this adapter's configuration lets it deliver assignments for.

        Core's import refuses whole (:class:`cartera.core.models.FileRejected`, nothing loaded) a batch with a row
        outside them, from ``fetch`` and from ``read_file`` (``import FILE``) alike. ``None`` (the default):
        the adapter does not restrict them; declare them whenever the configuration names them (and declare
        ``restricts_deliveries``).
        """
        return None

    @abc.abstractmethod
    def fetch(self) -> Iterator[AssignmentBatch]:
        """Yield the creditor's deliveries not yet acknowledged."""

    @abc.abstractmethod
    def acknowledge(self, batch: AssignmentBatch) -> None:
        """Called after ``batch`` was committed to the store: archive it so ``fetch`` does not yield it."""

    @abc.abstractmethod
    def reject(self, batch: AssignmentBatch) -> None:
        """Called after ``batch`` was rejected whole (:class:`cartera.core.models.FileRejected`) and its rejection
        report was delivered: set it aside, never deleted, so ``fetch`` does not yield it again (a corrected
        delivery is fetched as usual). May be called again for a batch already set aside (after a crash);
        ignore a batch ``fetch`` did not yield, gone, or changed since it was read."""

    def report_rejections(self, batch: AssignmentBatch, errors: Sequence[RowError]) -> None:
        """Deliver line, field and reason of each of ``errors`` (the quarantined rows of ``batch``, or one row of
        field ``file`` when it was rejected whole) to the creditor. Core calls it after the import committed and
        before :meth:`acknowledge` (or :meth:`reject`), when the adapter declares ``rejection_reports``.

        Idempotent: same name, same content. Raise on failure: the delivery is then fetched and reported again.
        This default cannot deliver reports: it raises :class:`cartera.core.errors.Unsupported`.
        """
        raise Unsupported(f"the {self.name} crm_sync adapter cannot send rejection reports")

    @abc.abstractmethod
    def export(self, activities: Sequence[Activity]) -> None:
        """Deliver activities to the creditor, in order. Raise on failure: core then re-sends them later."""


AdapterT = TypeVar("AdapterT", bound=Adapter[Any])
