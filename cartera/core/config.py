"""Loading and validating ``sites.toml``.

Only the selected site is validated in depth (its ``${ENV}`` secrets resolved, its plugin sections checked
against each plugin's config model): a node must not fail because another site's secrets live on another
machine. Every error is one :class:`ConfigError` line naming the file, site, key and, where known, line.
"""

from __future__ import annotations

import ipaddress
import json
import os
import posixpath
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path, PurePath, PurePosixPath
from types import UnionType
from typing import Annotated, Any, Literal, TypeGuard, TypeVar, Union, get_args, get_origin
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    Secret,
    SecretBytes,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from cartera.contact.compliance import PolicyError, validate
from cartera.contact.compliance.settings import ComplianceConfig
from cartera.contact.segments import Segment
from cartera.contact.sms_templates import SmsPricing, TemplateSet
from cartera.core import credentials
from cartera.core.adapters import (
    CHECK_DIRS,
    DialerCapabilities,
    PluginConfig,
    WritableDir,
    recording_key_problem,
    template_fields,
)
from cartera.core.errors import ConfigError, SettingError
from cartera.core.logs import LogFormat
from cartera.core.redaction import MASK, MIN_SECRET_LENGTH, encodings, redact
from cartera.core.registry import AdapterCatalog
from cartera.core.store.site_lease import LEASE_SECONDS, RENEW_SECONDS
from cartera.workspace.settings import WorkspaceConfig

PLUGIN_KINDS = ("dialer", "recording", "sms", "crm_sync")
#: A site's name: it names the site's data directory and database file (var/NAME), its rows in a shared store and
#: its calls' channel ids at the PBX, so it is a plain, lower-case file name that no two sites share in any form.
SITE_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: How many arrays or tables a site's setting may hold inside one another: far more than any setting has, far
#: fewer than a validator's recursion can take (pydantic's JSON parser stops at 200).
MAX_NESTING = 32
M = TypeVar("M", bound=BaseModel)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ClockConfig(_Section):
    mode: Literal["system", "simulated"] = "system"
    start: datetime | None = None
    speed: float = Field(
        default=1.0,
        ge=0.01,
        le=100_000,
        description="how many times faster than real time a simulated clock runs: 0.01 to 100,000",
    )

    @model_validator(mode="after")
    def _start_for_simulated(self) -> ClockConfig:
        if self.mode == "simulated" and (self.start is None or self.start.tzinfo is None):
            raise ValueError("a simulated clock needs start = an offset date-time, e.g. 2026-11-23T08:00:00-05:00")
        return self


def _each_share(value: dict[Segment, float], what: str) -> None:
    """:class:`ValueError` naming the first segment whose share is not above 0 and at most 1."""
    for segment, share in value.items():
        if not 0 < share <= 1:
            raise ValueError(f"segment {segment!r}: {what} above 0 and at most 1")


class ListingConfig(_Section):
    """Which due accounts the campaign calls first (:mod:`cartera.contact.listing`): callbacks at their time, then
    broken promises, then ``value`` (balance x P(reaching the debtor now), learned from the last ``history_days`` of
    calls, x P(payment | segment) when ``payment_by_segment`` is set) or ``fifo`` (longest due first)."""

    order: Literal["value", "fifo"] = "value"
    #: How many due accounts are ranked each tick (the longest due first).
    candidates: int = Field(default=200, ge=1, le=100_000)
    history_days: int = Field(default=90, ge=1, le=3660, description="days of calls learned from: 1 to 3660 (10 years)")
    #: Calls' worth of the site's overall rate in an hour of the week's rate, and of the site's pattern in a number's.
    hour_strength: float = Field(default=20.0, gt=0, le=1_000_000, description="calls' worth: at most 1,000,000")
    number_strength: float = Field(default=3.0, gt=0, le=1_000_000, description="calls' worth: at most 1,000,000")
    relearn_minutes: float = Field(
        default=15.0, gt=0, le=7 * 24 * 60, description="minutes between relearning: at most 10080 (a week)"
    )
    #: Share of the value-ordered calls each segment of days past due (tramo de mora) gets, e.g.
    #: {"1-30" = 0.4, "180+" = 0.1}; the segments without one (and accounts not past due) share the rest.
    segment_quotas: dict[Segment, float] = Field(default_factory=dict)

    @field_validator("segment_quotas")
    @classmethod
    def _shares(cls, value: dict[Segment, float]) -> dict[Segment, float]:
        _each_share(value, "a quota is a share of the calls,")
        if sum(value.values()) > 1 + 1e-9:
            raise ValueError(f"the segments' quotas add up to {sum(value.values()):g}: at most 1")
        return value

    #: P(payment | segment): an account's expected value is multiplied by its segment's chance that a debtor reached
    #: pays (or promises), e.g. {"1-30" = 0.4, "180+" = 0.07}; an account past due in a segment without one, or not
    #: past due, counts at the mean of those given. Empty (the default): no such term.
    payment_by_segment: dict[Segment, float] = Field(default_factory=dict)

    @field_validator("payment_by_segment")
    @classmethod
    def _chances(cls, value: dict[Segment, float]) -> dict[Segment, float]:
        _each_share(value, "a chance of payment is")
        return value

    def payment_chance(self, segment: Segment | None) -> float:
        """The ``payment_by_segment`` term of an account of ``segment`` (1 without that setting)."""
        chances = self.payment_by_segment
        if not chances:
            return 1.0
        found = chances.get(segment) if segment is not None else None
        return found if found is not None else sum(chances.values()) / len(chances)

    #: How the creditor's risk score (its files' risk_score column) weighs an account's expected value: "ignore";
    #: "higher_pays" (a higher score, a likelier payment) or "lower_pays": value x (0.5 + the score scaled to 0-1
    #: over risk_score_range, reversed for lower_pays); an account without a score counts as the middle (x1).
    risk_score: Literal["ignore", "higher_pays", "lower_pays"] = "ignore"
    risk_score_range: tuple[float, float] = (0.0, 1000.0)

    @field_validator("risk_score_range")
    @classmethod
    def _range(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] >= value[1]:
            raise ValueError(f"the lowest score {value[0]:g} must be below the highest {value[1]:g}")
        return value


class AbandonmentConfig(_Section):
    """The abandonment limit: abandoned calls over calls answered by a person, per campaign over a rolling window
    (the US rule's 3% over 30 days; Ofcom's is 3% per day), and how long a number whose call was abandoned rests."""

    limit: float = Field(default=0.03, gt=0, lt=1)
    window_days: float = Field(default=30, gt=0, le=366, description="the rolling window in days: at most 366")
    redial_after_hours: float = Field(
        default=72, ge=0, le=24 * 366, description="hours a number rests: 0 to 8784 (366 days)"
    )


class CampaignConfig(_Section):
    enabled: bool = True
    #: How many calls the campaign places (:mod:`cartera.contact.pace`): "ratio" (the dialer's ``dial_ratio`` calls
    #: per available agent), "progressive" (one call in flight per ready agent), "predictive" (as many as keep the
    #: abandoned calls within ``abandonment.limit``; progressive below ``min_team`` agents) or "preview" (none by
    #: itself: the agent sees the account, then calls). The dialer's capacity is the ceiling of each.
    mode: Literal["ratio", "progressive", "predictive", "preview"] = "ratio"
    min_team: int = Field(default=5, ge=1, le=10_000, description="agents: 1 to 10,000")
    tick_seconds: float = Field(default=1.0, gt=0, le=3600, description="seconds between ticks: at most 3600")
    max_attempts_per_day: int = Field(default=3, ge=1, le=1000, description="call attempts: 1 to 1000")
    retry_after_minutes: float = Field(
        default=120, gt=0, le=30 * 24 * 60, description="minutes before a retry: at most 43200 (30 days)"
    )
    promise_sms: bool = True
    #: Texted (through the gate) when a day's call attempts all failed to reach the debtor; {account} is
    #: replaced by the account reference. Empty: no reminder.
    reminder_sms: str = (
        "Tiene un saldo pendiente en la cuenta {account}. Comuníquese con nosotros para acordar su pago."
    )
    listing: ListingConfig = ListingConfig()
    abandonment: AbandonmentConfig = AbandonmentConfig()

    @property
    def abandoned_rest_hours(self) -> float:
        """How long a number whose call was abandoned rests from calls: not at all in progressive mode, where a
        ready agent waits for each call (the rule's exemption when an agent is guaranteed)."""
        return 0.0 if self.mode == "progressive" else self.abandonment.redial_after_hours


KEY_FIELDS = ("site", "yyyy", "mm", "dd", "call_id", "ext")
#: Values a key template is tried with: a call's attempt number (short, long) or, for a recording of no attempt,
#: its catalog id ("rec-7"), a site's name and extensions as the catalog gives them.
KEY_SAMPLES: tuple[dict[str, object], ...] = (
    {"site": "demo", "yyyy": "2026", "mm": "01", "dd": "02", "call_id": 7, "ext": "wav"},
    {"site": "bogota_norte", "yyyy": "2026", "mm": "12", "dd": "31", "call_id": 123456789012, "ext": "bin"},
    {"site": "d", "yyyy": "2026", "mm": "01", "dd": "02", "call_id": "rec-7", "ext": "mp3"},
)
#: The longest retention a store is asked for: 100 years (a "keep for ever" value past it overflows dates).
MAX_RETENTION_DAYS = 36_500


class RetentionConfig(_Section):
    """How long the store keeps recordings: per portfolio ("CREDITOR/PORTFOLIO" or "PORTFOLIO"), else default."""

    default_days: int | None = Field(
        default=None, ge=1, le=MAX_RETENTION_DAYS, description="days kept: 1 to 36500 (100 years)"
    )
    portfolios: dict[str, int] = Field(default_factory=dict, description="days kept: 1 to 36500 (100 years)")

    @field_validator("portfolios")
    @classmethod
    def _positive(cls, value: dict[str, int]) -> dict[str, int]:
        for name, days in value.items():
            if days < 1:
                raise ValueError(f"retention of {name!r} must be at least 1 day (got {days})")
            if days > MAX_RETENTION_DAYS:
                raise ValueError(f"retention of {name!r} must be at most {MAX_RETENTION_DAYS} days (got {days})")
        return value


#: Keys the dialer's section took over: finding finished recordings in a PBX's spool is the dialer's job.
MOVED_TO_DIALER = ("spool_dir", "spool_patterns", "quiet_period_s")


class ArchivalConfig(_Section):
    every_seconds: float = Field(default=30, gt=0, le=86_400, description="seconds between runs: at most 86400")
    local_retention_hours: float = Field(
        default=0, ge=0, le=24 * MAX_RETENTION_DAYS, description="hours: 0 to 876000 (100 years)"
    )
    workers: int | None = Field(default=None, ge=1, le=256)
    key_template: str = "{site}/{yyyy}/{mm}/{dd}/{call_id}.{ext}"
    retention: RetentionConfig = RetentionConfig()

    @model_validator(mode="before")
    @classmethod
    def _moved(cls, data: Any) -> Any:
        for key in MOVED_TO_DIALER:
            if isinstance(data, dict) and key in data:
                raise SettingError(
                    f'moved to the site\'s dialer section: the Asterisk dialer (plugin = "asterisk_ami") finds '
                    f"the finished recordings in its spool folder now; write {key} there",
                    key,
                )
        return data

    @field_validator("key_template")
    @classmethod
    def _known_fields(cls, value: str) -> str:
        names = template_fields(value)
        unknown = names - set(KEY_FIELDS)
        if unknown:
            raise ValueError(f"unknown field {sorted(unknown)[0]!r} (use {', '.join(KEY_FIELDS)})")
        if "call_id" not in names:
            raise ValueError("the key template must contain {call_id}, or recordings would share keys")
        for sample in KEY_SAMPLES:
            try:
                key = value.format(**sample)
            except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
                raise ValueError(f"cannot make a key of call {sample['call_id']!r}: {exc}") from None
            problem = recording_key_problem(key)
            if problem is not None:
                raise ValueError(f"gives keys a recording store refuses, such as {key!r}: {problem}")
        return value


class SyncConfig(_Section):
    every_seconds: float = Field(default=300, gt=0, le=86_400, description="seconds between runs: at most 86400")
    #: a creditor delivery (file or API batch) of more rows is refused whole, nothing of it loaded
    max_delivery_rows: int = Field(default=200_000, ge=1, le=100_000_000, description="rows: 1 to 100,000,000")


_HOST_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def bind_problem(bind: str) -> None:
    """Raise ``ValueError`` unless ``bind`` is written as an IP address or a host name (whether a name resolves
    is ``check``'s question: a name may resolve only on its own node's machine)."""
    if not bind:
        raise ValueError("empty: give an IP address (127.0.0.1, 0.0.0.0, ::1) or a host name")
    if bind != bind.strip() or any(char.isspace() for char in bind):
        raise ValueError(f"{bind!r} has blanks: give an IP address or a host name alone")
    if ":" in bind or all(part.isdigit() for part in bind.rstrip(".").split(".")):
        try:
            ipaddress.ip_address(bind)
        except ValueError:
            raise ValueError(f"{bind!r} is not an IP address") from None
        return
    labels = bind[:-1].split(".") if bind.endswith(".") else bind.split(".")
    if len(bind) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        raise ValueError(f"{bind!r} is neither an IP address nor a host name")


class WebConfig(_Section):
    """The node's HTTP server, started by ``run``: plugin callbacks, health, metrics and the supervisors'
    pages. It binds to loopback by default; operators put a TLS proxy in front."""

    enabled: bool = True
    #: an IP address, or a host name (``check`` says whether it resolves; ``run`` binds what it resolves to)
    bind: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    public_url: str | None = None  #: how peers reach the node when not at ``http://bind:port``
    session_minutes: float = Field(default=30, gt=0, le=24 * 60)  #: supervisors' sessions expire when idle
    session_max_hours: float = Field(default=12, gt=0, le=7 * 24)  #: and this long after sign-in, however busy
    language: Literal["es", "en"] = "es"  #: the pages' default language (each user may switch)
    check_seconds: float = Field(default=60, gt=0, le=86_400)  #: how often ``run`` checks the vendors for ``/healthz``
    workers: int = Field(default=2, ge=1, le=64)  #: the pages' blocking work (sign-in, search...) at a time
    queue: int = Field(default=8, ge=0, le=1000)  #: requests waiting for a worker; more are answered 503
    #: proxies (addresses or networks) whose X-Forwarded-For is believed; none by default
    trusted_proxies: tuple[IPvAnyNetwork, ...] = ()
    #: seconds a connection has to send a complete request head (after connecting or its previous response)
    head_timeout: float = Field(default=10, gt=0, le=300)
    #: seconds a request body has after its head (plus one for each 64 KiB received), and a response left unread
    body_timeout: float = Field(default=15, gt=0, le=300)
    #: open connections at most; more are closed at once (default: the descriptor limit less a reserve)
    max_connections: int | None = Field(default=None, ge=1, le=1_000_000)

    @field_validator("bind")
    @classmethod
    def _bindable(cls, value: str) -> str:
        bind_problem(value)
        return value

    @property
    def base_url(self) -> str:
        return (self.public_url or f"http://{self.bind}:{self.port}").rstrip("/")


class NodeConfig(_Section):
    """The site's lease on PostgreSQL (a standby node takes the site over once it expires): the working node renews
    it every ``renew_seconds``; it expires ``lease_seconds`` after the last renewal. A renewal must fit in the lease
    twice, so one renewal lost to a slow store does not hand the site to the standby."""

    lease_seconds: float = Field(default=LEASE_SECONDS, gt=0, le=3600)
    renew_seconds: float = Field(default=RENEW_SECONDS, gt=0)

    @model_validator(mode="after")
    def _renewed_in_time(self) -> NodeConfig:
        if self.renew_seconds >= self.lease_seconds / 2:
            raise SettingError(
                f"must be less than half of lease_seconds ({self.lease_seconds:g}), got {self.renew_seconds:g}",
                "renew_seconds",
            )
        return self


class PluginSection(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    plugin: str


class SiteSection(_Section):
    timezone: str
    country: str
    database: str | None = None
    data_dir: WritableDir | None = None
    log_format: LogFormat = "text"
    clock: ClockConfig = ClockConfig()
    compliance: ComplianceConfig = ComplianceConfig()
    campaign: CampaignConfig = CampaignConfig()
    archival: ArchivalConfig = ArchivalConfig()
    sync: SyncConfig = SyncConfig()
    web: WebConfig = WebConfig()
    workspace: WorkspaceConfig = WorkspaceConfig()
    node: NodeConfig = NodeConfig()
    #: SMS templates by portfolio ("CREDITOR/PORTFOLIO", "PORTFOLIO" or "default"), then by name
    sms_templates: dict[str, TemplateSet] = {}
    sms_pricing: SmsPricing = SmsPricing()
    dialer: PluginSection | None = None
    recording: PluginSection | None = None
    sms: PluginSection | None = None
    crm_sync: PluginSection | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
            raise ValueError(f"unknown time zone {value!r} (use an IANA name like America/Bogota)") from None
        return value

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str) -> str:
        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown country {value!r} (use an ISO 3166 code like CO)")
        return value


@dataclass(frozen=True)
class PluginChoice:
    kind: str
    name: str
    settings: PluginConfig


@dataclass(frozen=True)
class SiteConfig:
    """One site, validated, with paths absolute and secrets resolved."""

    name: str
    source: Path
    section: SiteSection
    data_dir: Path
    database_url: str
    plugins: dict[str, PluginChoice]

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.section.timezone)


def read_document(path: Path) -> tuple[str, dict[str, Any]]:
    """Read and parse the TOML file (UTF-8, with or without a byte-order mark); syntax errors name line and
    column."""
    try:
        # "utf-8-sig": a byte-order mark (Windows editors write one) is read as the file's start, not its text
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (pass --config PATH)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        match = re.search(r"\(at line (\d+), column (\d+)\)", str(exc))
        where = f"{path}:{match.group(1)}:{match.group(2)}" if match else str(path)
        message = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise ConfigError(f"{where}: TOML syntax error: {message}") from None
    except RecursionError:  # tomllib parses arrays and inline tables recursively
        line = _too_deep_line(text)
        raise ConfigError(
            f"{path}:{line}: a value nested too deeply (arrays or inline tables inside one another)"
        ) from None
    sites = doc.get("sites")
    if not isinstance(sites, dict) or not sites:
        raise ConfigError(f"{path}: no [sites.NAME] table defined")
    return text, doc


def _nested_too_deeply(table: dict[str, Any]) -> tuple[str, ...] | None:
    """The key of the first value of ``table`` with more than :data:`MAX_NESTING` arrays or tables inside one
    another (``None``: none has), walked without recursion."""
    pending: list[tuple[Any, tuple[str, ...], int]] = [(value, (name,), 1) for name, value in table.items()]
    while pending:
        value, key, depth = pending.pop()
        if depth > MAX_NESTING:
            return key
        if isinstance(value, dict):
            pending += [(item, (*key, str(name)), depth + 1) for name, item in value.items()]
        elif isinstance(value, list):
            pending += [(item, key, depth + 1) for item in value]
    return None


def _too_deep_line(text: str) -> int:
    """The line where the nesting of ``text`` gets too deep for the parser: the first line whose text up to it
    already fails so (parsing stops there whatever follows), found by bisection."""
    lines = text.splitlines(keepends=True)
    low, high = 1, len(lines)
    while low < high:
        middle = (low + high) // 2
        try:
            tomllib.loads("".join(lines[:middle]))
        except RecursionError:
            high = middle
            continue
        except tomllib.TOMLDecodeError:
            pass
        low = middle + 1
    return low


def site_names(path: Path) -> list[str]:
    return sorted(read_document(path)[1]["sites"])


def load_site(path: Path, site: str, catalog: AdapterCatalog) -> SiteConfig:
    """Validate site ``site`` of ``path`` against core's schema and its plugins' config models."""
    path = path.resolve()
    text, doc = read_document(path)
    sites: dict[str, Any] = doc["sites"]
    if site not in sites:
        raise ConfigError(f"{path}: unknown site {site!r} (defined: {', '.join(sorted(sites))})")
    if not SITE_NAME.fullmatch(site):
        line = _site_line(text, site)
        where = f"{path}:{line}" if line else str(path)
        raise ConfigError(
            f"{where}: site {site!r}: not a valid site name: 1 to 32 lower-case letters, digits, '_' or '-', "
            "beginning with a letter or digit"
        )
    errors = _Errors(path, text, site)
    raw = sites[site]
    if not isinstance(raw, dict):
        errors.fail((), "must be a table")
    deep = _nested_too_deeply(raw)
    if deep is not None:
        errors.fail(deep, f"a value nested too deeply: more than {MAX_NESTING} arrays or tables inside one another")
    raw = _substitute_env(raw, (), errors)
    base_dir = path.parent
    section = _strict(SiteSection, raw, base_dir, errors, ())
    try:
        validate(section.compliance, section.country)
    except PolicyError as exc:
        errors.fail(("compliance", *exc.key), str(exc))
    plugins: dict[str, PluginChoice] = {}
    registries = catalog.by_kind()
    for kind in PLUGIN_KINDS:
        choice: PluginSection | None = getattr(section, kind)
        if choice is None:
            continue
        adapter = _lookup(registries[kind], choice.plugin, errors, kind)
        settings_raw = {name: value for name, value in raw[kind].items() if name != "plugin"}
        settings = _strict(adapter.config_model, settings_raw, base_dir, errors, (kind,))
        for name, value in credentials.secret_settings(settings):
            _checked(credentials.secret, value, (kind, *name), errors, "this secret")
        plugins[kind] = PluginChoice(kind=kind, name=choice.plugin, settings=settings)
        if kind == "dialer":
            _refuse_preview_without_agents(section, choice.plugin, adapter.capabilities, errors)
    secret_keys = [name for name, _ in credentials.secret_settings(section)]
    secret_keys += [
        (kind, *name) for kind, choice in plugins.items() for name, _ in credentials.secret_settings(choice.settings)
    ]
    _refuse_literal_secrets(sites[site], secret_keys, errors)
    _refuse_shared_integration_tokens(sites, site, section.workspace, plugins, errors)
    _refuse_shared_dirs(sites, site, base_dir, registries, errors)
    data_dir = section.data_dir or base_dir / "var" / site
    database = section.database or f"sqlite:///{base_dir / 'var' / f'{site}.db'}"
    return SiteConfig(
        name=site, source=path, section=section, data_dir=data_dir, database_url=database, plugins=plugins
    )


def _site_line(text: str, site: str) -> int | None:
    """The line of the first table header of site ``site`` (``[sites."a.b"]``, ``[sites.x.web]``...), if any."""
    for lineno, line in enumerate(text.splitlines(), 1):
        if not _HEADER.match(line):
            continue
        try:
            table = tomllib.loads(line.strip().replace("[[", "[").replace("]]", "]"))
        except tomllib.TOMLDecodeError:
            continue
        sites = table.get("sites")
        if isinstance(sites, dict) and site in sites:
            return lineno
    return None


def _refuse_preview_without_agents(section: SiteSection, dialer: str, declared: object, errors: _Errors) -> None:
    """Preview mode has each agent place its own calls, connected to that agent: a dialer that cannot connect a
    call to a given agent (``targets_agents``) would refuse every offer."""
    if section.campaign.mode == "preview" and not (
        isinstance(declared, DialerCapabilities) and declared.targets_agents
    ):
        errors.fail(
            ("campaign", "mode"),
            f"preview mode needs a dialer that connects a call to a given agent (targets_agents): dialer {dialer!r} "
            "cannot; use mode ratio, progressive or predictive, or such a dialer (simulator, asterisk_ami)",
        )


def _refuse_shared_integration_tokens(
    sites: dict[str, Any], site: str, workspace: WorkspaceConfig, plugins: dict[str, PluginChoice], errors: _Errors
) -> None:
    """A workspace integration's token acts for the whole site (every creditor's calls, dispositions as any
    agent): one that is also another integration's token or any plugin's secret (a creditor's API token, the
    webhook token the node sends a creditor...), at this site or any other of the file, would hand the site to
    whoever holds that secret. Refused, naming both keys, never the secret. Another site's value that names a
    variable unset here is compared as written: the same ``${VAR}`` is the same secret."""
    integrations = ("workspace", "integrations")
    ours = [
        ((choice.kind, *name), value)
        for choice in plugins.values()
        for name, value in credentials.secret_settings(choice.settings)
    ]
    ours += [
        ((*integrations, name, "token"), access.token.get_secret_value())
        for name, access in workspace.integrations.items()
    ]
    holders: dict[str, str] = {}
    for key, value in ours:
        if key[:2] == integrations and value in holders:
            errors.fail(key, f"the same secret as {holders[value]}: {_OWN_SECRET}")
        holders.setdefault(value, ".".join(key))
    written = [(key, {value, _raw_at(sites[site], key) or value}) for key, value in ours]
    for other, raw in sites.items():
        if other == site or not isinstance(raw, dict):
            continue
        tables: list[tuple[tuple[str, ...], Any]] = [((kind,), raw.get(kind)) for kind in PLUGIN_KINDS]
        tables.append((integrations, _raw_at(raw, integrations)))
        theirs = [(key, {text, _raw_text(text)}) for where, table in tables for key, text in _texts(table, where)]
        for key, mine in written:
            for their_key, forms in theirs:
                if integrations in (key[:2], their_key[:2]) and not mine.isdisjoint(forms):
                    errors.fail(key, f"the same secret as site {other!r}, key {'.'.join(their_key)!r}: {_OWN_SECRET}")


_OWN_SECRET = "an integration token acts for the whole site, so it needs a secret of its own"


def _texts(value: Any, key: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], str]]:
    """``(key, text)`` of every text in a raw table, as written (``${VAR}`` unsubstituted)."""
    if isinstance(value, dict):
        for name, inner in value.items():
            yield from _texts(inner, (*key, str(name)))
    elif isinstance(value, list):
        for inner in value:
            yield from _texts(inner, key)
    elif isinstance(value, str):
        yield key, value


def _raw_at(raw: Any, key: tuple[str, ...]) -> Any:
    """What a raw table holds at ``key`` as written (``None``: nothing)."""
    for part in key:
        raw = raw.get(part) if isinstance(raw, dict) else None
    return raw


def _refuse_shared_dirs(
    sites: dict[str, Any], site: str, base_dir: Path, registries: dict[str, Any], errors: _Errors
) -> None:
    """Two sites with one ``data_dir``, or with overlapping directories their plugins declare exclusive (a
    creditor's inbox, local or on the creditor's server...), would take each other's files: refused, naming
    both sites and keys."""
    ours = _exclusive_dirs(site, sites[site], base_dir, registries)
    _refuse_own_overlaps(ours, _nested_dirs(sites[site], registries), errors)
    for other, raw in sites.items():
        if other == site:
            continue
        for their_key, theirs in _exclusive_dirs(other, raw, base_dir, registries).items():
            for our_key, mine in ours.items():
                if _clash(our_key, mine, their_key, theirs):
                    errors.fail(
                        our_key,
                        f"{mine} overlaps site {other!r}, key {'.'.join(their_key)!r} ({theirs}): two sites would "
                        "take each other's files; give each site its own",
                    )
                elif mine.server == theirs.server and mine.path.is_absolute() != theirs.path.is_absolute():
                    errors.fail(
                        our_key,
                        f"{mine} may be the folder of site {other!r}, key {'.'.join(their_key)!r} ({theirs}): a "
                        "relative remote path is under the login's home, which the configuration cannot know; "
                        "write both absolute",
                    )


def _refuse_own_overlaps(
    ours: dict[tuple[str, ...], _Place], nested: set[tuple[tuple[str, ...], tuple[str, ...]]], errors: _Errors
) -> None:
    """One site's exclusive directories that overlap (the same, or one inside the other, unless its plugin lets
    the first lie inside the second: ``nested``), or that hold its ``data_dir``: refused, naming both keys. A
    csv ``outbox`` that is the ``inbox`` had the node read its own export as a creditor file, reject it, then
    reject each rejection report in turn, for ever (round 21 C-F5)."""
    data_dir = ours.get(("data_dir",))
    keys = [key for key in ours if key != ("data_dir",)]
    for n, key in enumerate(keys):
        place = ours[key]
        if (
            data_dir is not None
            and place.server == ""
            and (place.path == data_dir.path or place.path in data_dir.path.parents)
        ):
            errors.fail(
                key,
                f"{place} holds the site's data_dir ({data_dir}): a creditor's folder must not hold the node's files",
            )
        for other in keys[n + 1 :]:
            theirs = ours[other]
            if not _clash(key, place, other, theirs):
                continue
            if place.path != theirs.path and (
                ((key, other) in nested and theirs.path in place.path.parents)
                or ((other, key) in nested and place.path in theirs.path.parents)
            ):
                continue
            errors.fail(
                other,
                f"{theirs} overlaps this site's key {'.'.join(key)!r} ({place}): the node would take its own files "
                "for another folder's; give each its own folder",
            )


def _nested_dirs(raw: Any, registries: dict[str, Any]) -> set[tuple[tuple[str, ...], tuple[str, ...]]]:
    """The (inner, outer) key pairs of a site's plugins' ``nested_dirs``."""
    return {
        ((kind, inner), (kind, outer))
        for kind, model, _ in _plugin_models(raw, registries)
        for inner, outer in model.nested_dirs.items()
    }


@dataclass(frozen=True)
class _Place:
    """A directory as two sites' tables are compared: a local path (no ``server``), or a path on the remote
    server its plugin's ``exclusive_server`` keys name (``cobranza:sftp.bco.example:22``)."""

    server: str
    path: PurePath

    def __str__(self) -> str:
        return f"{self.server}:{self.path}" if self.server else str(self.path)


def _exclusive_dirs(site: str, raw: Any, base_dir: Path, registries: dict[str, Any]) -> dict[tuple[str, ...], _Place]:
    """Site ``site``'s ``data_dir`` and its plugins' ``exclusive_dirs``, read from its raw table (another site
    is not validated here): a value that is no text, or uses a variable unset on this node, is skipped."""
    if not isinstance(raw, dict):
        return {}
    data_dir = _raw_text(raw.get("data_dir", f"var/{site}"))
    found: dict[tuple[str, ...], _Place] = {}
    if data_dir is not None:
        found[("data_dir",)] = _Place("", (base_dir / data_dir).resolve())
    for kind, model, section in _plugin_models(raw, registries):
        found.update({(kind, key): place for key, place in _declared_dirs(model, section, base_dir).items()})
    return found


def _plugin_models(raw: Any, registries: dict[str, Any]) -> Iterator[tuple[str, type[PluginConfig], dict[str, Any]]]:
    """Each plugin kind a site's raw table chooses a known plugin for: its config model and raw section."""
    for kind in PLUGIN_KINDS:
        section = raw.get(kind) if isinstance(raw, dict) else None
        plugin = section.get("plugin") if isinstance(section, dict) else None
        if not isinstance(section, dict) or not isinstance(plugin, str):
            continue
        try:
            model: type[PluginConfig] = registries[kind].get(plugin).config_model
        except ConfigError:
            continue
        yield kind, model, section


def _declared_dirs(model: type[PluginConfig], section: dict[str, Any], base_dir: Path) -> dict[str, _Place]:
    """The places of ``model``'s ``exclusive_dirs`` in ``section``: local paths, or remote ones (normalised) on
    the server its ``exclusive_server`` keys name (their defaults when unset; a ``host`` in lower case without its
    trailing dot)."""
    texts = {key: _raw_text(section.get(key)) for key in model.exclusive_dirs}
    if not model.exclusive_server:
        return {key: _Place("", (base_dir / text).resolve()) for key, text in texts.items() if text is not None}
    fields = model.model_fields
    server = [_raw_text(section.get(key, fields[key].default)) for key in model.exclusive_server]
    if any(part is None for part in server):
        return {}
    named = ":".join(
        part.lower().rstrip(".") if key == "host" else part
        for key, part in zip(model.exclusive_server, server, strict=True)
        if part is not None
    )
    return {key: _Place(named, _remote_path(text)) for key, text in texts.items() if text}


def _remote_path(text: str) -> PurePosixPath:
    """A remote folder normalised: ``//in/./x/..`` is ``/in`` (POSIX keeps a leading ``//``; SFTP servers do not)."""
    return PurePosixPath(re.sub("^/+", "/", posixpath.normpath(text)))


def _raw_text(value: Any) -> str | None:
    """A raw value as text with its ``${VAR}`` substituted; None when it is no text or number, or names a
    variable unset on this node."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str) or any(name not in os.environ for name in _ENV_REF.findall(value)):
        return None
    return _ENV_REF.sub(lambda match: os.environ[match.group(1)], value)


def _clash(our_key: tuple[str, ...], mine: _Place, their_key: tuple[str, ...], theirs: _Place) -> bool:
    """The same ``data_dir``, or exclusive directories on one server that are the same or one inside the other."""
    if ("data_dir",) in (our_key, their_key):
        return our_key == their_key and mine == theirs
    if mine.server != theirs.server:
        return False
    return mine.path == theirs.path or mine.path in theirs.path.parents or theirs.path in mine.path.parents


def _strict(model: type[M], raw: dict[str, Any], base_dir: Path, errors: _Errors, key: tuple[str, ...]) -> M:
    """``raw`` as ``model``, taking values only in their own TOML type: "12" is no integer, "false" no boolean,
    7.0 no integer (an integer is a float, a string a path, a date-time, time or enum). Directories the node
    will create are checked."""
    document = json.dumps(raw, default=_toml_scalar)
    try:
        valid = model.model_validate_json(document, strict=True, context={"base_dir": base_dir, CHECK_DIRS: True})
    except ValidationError as exc:
        secrets = list(_secret_values(model, json.loads(document)))
        return errors.from_validation(exc, key, model, secrets)  # type: ignore[no-any-return]
    own = {name: value for name, value in raw.items() if not (model is SiteSection and name in PLUGIN_KINDS)}
    retyped = _retyped_date(own, valid, key)
    if retyped is not None:
        errors.fail(retyped, "a TOML date or time is no valid value here (quote it if it is text)")
    return valid


def _retyped_date(raw: Any, valid: Any, key: tuple[str, ...]) -> tuple[str, ...] | None:
    """The key of a TOML date or time in ``raw`` that validation made text (JSON carries it as text)."""
    if isinstance(raw, date | time):
        return None if isinstance(valid, date | time) else key
    if isinstance(raw, list) and isinstance(valid, tuple | list):
        found = (_retyped_date(item, got, key) for item, got in zip(raw, valid, strict=False))
        return next((where for where in found if where is not None), None)
    if isinstance(raw, dict):
        values = {getattr(k, "value", k): v for k, v in valid.items()} if isinstance(valid, dict) else None
        for name, item in raw.items():
            got = values.get(name) if values is not None else getattr(valid, name, None)
            if (where := _retyped_date(item, got, (*key, name))) is not None:
                return where
    return None


def _toml_scalar(value: object) -> str:
    """TOML's date-times, dates and times, for JSON: as ISO 8601 text, as pydantic reads them."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not a TOML value")


def _lookup(registry: Any, name: str, errors: _Errors, kind: str) -> Any:
    try:
        return registry.get(name)
    except ConfigError as exc:
        errors.fail((kind, "plugin"), str(exc))


_MALFORMED_REFERENCE = (
    "a malformed environment variable reference: write ${NAME}, NAME being letters, digits and '_' (not beginning"
    " with a digit), without blanks; a '${' is never kept as text"
)
_LITERAL_DOLLAR = (
    "a secret written as text beginning with '$' (a mistyped reference?): write ${NAME} to take it from"
    " environment variable NAME (a secret that really begins with '$' goes into the environment too)"
)


def _malformed_reference(value: str, key: tuple[str, ...]) -> bool:
    """Whether ``value`` holds a ``${`` that opens no valid ``${NAME}`` (``${ X }``, ``${A-B}``, an unclosed
    ``${``): kept as text, it would become the setting (a token anyone reading sites.toml knows). In an SMS
    template, ``${{``, ``${%`` and ``${#`` are a currency sign before Jinja2's delimiters."""
    jinja = key[:1] == ("sms_templates",)
    start = value.find("${")
    while start != -1:
        if not _ENV_REF.match(value, start) and not (jinja and value[start + 2 : start + 3] in ("{", "%", "#")):
            return True
        start = value.find("${", start + 2)
    return False


def _literal_dollar(raw: object) -> bool:
    """Whether a secret as written in sites.toml is text beginning with ``$`` but no valid ``${NAME}``
    (``$NAME``, shell style): a mistyped reference the node would take as the secret itself."""
    return isinstance(raw, str) and raw.startswith("$") and _ENV_REF.match(raw) is None


def _refuse_literal_secrets(raw: dict[str, Any], secrets: Iterable[tuple[str, ...]], errors: _Errors) -> None:
    """Every secret setting (``SecretStr``) written as text beginning with ``$`` but no ``${NAME}``: refused."""
    for key in secrets:
        written = _raw_at(raw, key)
        for text in written if isinstance(written, list) else [written]:
            if _literal_dollar(text):
                errors.fail(key, _LITERAL_DOLLAR)


def _substitute_env(value: Any, key: tuple[str, ...], errors: _Errors) -> Any:
    if isinstance(value, dict):
        return {k: _substitute_env(v, (*key, k), errors) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute_env(v, key, errors) for v in value]
    if isinstance(value, str) and _malformed_reference(value, key):
        errors.fail(key, _MALFORMED_REFERENCE)
    if isinstance(value, str) and _literal_dollar(credentials.url_password(value)):
        errors.fail(key, f"the URL's password: {_LITERAL_DOLLAR}")
    if isinstance(value, str) and "${" in value:

        def replace(match: re.Match[str]) -> str:
            var = match.group(1)
            if var not in os.environ:
                errors.fail(key, f"environment variable {var} is not set")
            secret = os.environ[var]
            _checked(credentials.secret, secret, key, errors, f"environment variable {var}")
            return secret

        value = _ENV_REF.sub(replace, value)
    if isinstance(value, str):
        _checked(credentials.url_credentials, value, key, errors)
    return value


def _checked(check: Callable[..., None], value: str, key: tuple[str, ...], errors: _Errors, *args: str) -> None:
    try:
        check(value, *args)
    except ValueError as exc:
        errors.fail(key, str(exc))


class _Errors:
    """Turns problems into one ``ConfigError`` line: ``FILE:LINE: site 'S', key 'K': message``."""

    def __init__(self, path: Path, text: str, site: str) -> None:
        self.path, self.text, self.site = path, text, site

    def fail(self, key: tuple[str, ...], message: str) -> Any:
        line = _locate(self.text, ("sites", self.site, *key))
        where = f"{self.path}:{line}" if line else str(self.path)
        dotted = ".".join(key)
        subject = f"site {self.site!r}, key {dotted!r}" if dotted else f"site {self.site!r}"
        raise ConfigError(f"{where}: {subject}: {message}")

    def from_validation(
        self, exc: ValidationError, prefix: tuple[str, ...], model: type[BaseModel], secrets: list[Any]
    ) -> Any:
        """The first error of ``exc``, never showing any of ``secrets`` (the values of secret settings)."""
        first = exc.errors()[0]
        loc = tuple(str(part) for part in first["loc"] if not isinstance(part, int))
        error = (first.get("ctx") or {}).get("error")
        if isinstance(error, SettingError):
            loc += error.key
        kind = first["type"]
        if kind == "extra_forbidden":
            valid = _keys_of(model, loc[:-1])
            message = f"unknown key (valid: {', '.join(valid)})" if valid else "unknown key"
        elif kind == "missing":
            message = "missing key"
        else:
            message = first["msg"].removeprefix("Value error, ")
            shown = first.get("input")
            secret = any(type(shown) is type(value) and shown == value for value in secrets)
            if "input" in first and not isinstance(shown, dict | list) and not secret and repr(shown) not in message:
                message += f" (got {redact(repr(shown))})"
            message = _hidden(message, secrets)
        self.fail((*prefix, *loc), message)


def _is_secret(annotation: object) -> bool:
    kind = get_origin(annotation) or annotation
    return isinstance(kind, type) and issubclass(kind, Secret | SecretStr | SecretBytes)


def _secret_values(annotation: Any, value: Any) -> Iterator[Any]:
    """The values that settings typed as secrets (``SecretStr``...) in ``annotation`` hold in ``value`` (the
    document as validation reads it), whatever their type or validity: in nested tables, arrays and unions too."""
    if _is_secret(annotation):
        if isinstance(value, dict | list):
            for item in value.values() if isinstance(value, dict) else value:
                yield from _secret_values(annotation, item)
        elif value is not None:
            yield value
    elif _is_model(annotation):
        if isinstance(value, dict):
            for name, field in annotation.model_fields.items():
                for key in {name, field.alias} - {None}:
                    if key in value:
                        yield from _secret_values(field.annotation, value[key])
    elif get_origin(annotation) is Annotated:
        yield from _secret_values(get_args(annotation)[0], value)
    elif get_origin(annotation) in (Union, UnionType):
        for member in get_args(annotation):
            yield from _secret_values(member, value)
    elif isinstance(value, dict | list):  # a dict, list, tuple... of settings: each item as each type argument
        for item in value.values() if isinstance(value, dict) else value:
            for argument in get_args(annotation):
                yield from _secret_values(argument, item)


def _hidden(message: str, secrets: list[Any]) -> str:
    """``message`` with every form of each secret value masked; one too short to mask: none of the message."""
    forms = set()
    for value in secrets:
        text = value if isinstance(value, str) else str(value)
        forms |= {text, repr(value), json.dumps(value)} | encodings(text)
    for form in sorted(forms, key=len, reverse=True):
        if form and form in message:
            if len(form) < MIN_SECRET_LENGTH:
                return "invalid value (not shown: the setting is a secret)"
            message = message.replace(form, MASK)
    return message


def _keys_of(model: type[BaseModel], loc: tuple[str, ...]) -> list[str]:
    """The keys of the table at ``loc`` in ``model`` (nested models only; empty where it is not one)."""
    for part in loc:
        field = model.model_fields.get(part)
        nested = [arg for arg in (field.annotation, *get_args(field.annotation)) if _is_model(arg)] if field else []
        if not nested:
            return []
        model = nested[0]
    return sorted(name for name in model.model_fields if name != "plugin" or model is PluginSection)


def _is_model(annotation: object) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_KEY = re.compile(r"^\s*([A-Za-z0-9_\-\"'. ]+?)\s*=")


def _split(dotted: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in dotted.split("."))


def _locate(text: str, path: tuple[str, ...]) -> int | None:
    """Best-effort line of ``path`` in ``text``: the key's line, else its nearest enclosing one."""
    best: tuple[int, int] | None = None  # (depth matched, line)
    table: tuple[str, ...] = ()
    for lineno, line in enumerate(text.splitlines(), 1):
        header = _HEADER.match(line)
        if header:
            table = _split(header.group(1))
            full = table
        else:
            key = _KEY.match(line)
            if not key:
                continue
            full = table + _split(key.group(1))
        if path[: len(full)] == full and (best is None or len(full) > best[0]):
            best = (len(full), lineno)
    return best[1] if best and best[0] > 2 else None
