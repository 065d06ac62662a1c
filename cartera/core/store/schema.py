"""SQLAlchemy models of the node's store. Changes here need an Alembic revision (a test compares them)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Stores naive UTC, returns aware UTC, on every backend (SQLite keeps no offsets)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Money(TypeDecorator[Decimal]):
    """Exact amounts with two decimals, stored as integer hundredths (no float rounding on SQLite)."""

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        return None if value is None else int((Decimal(value) * 100).to_integral_value())

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else (Decimal(int(value)) / 100).quantize(Decimal("0.01"))


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Site(Base):
    __tablename__ = "sites"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    timezone: Mapped[str] = mapped_column(String(64))
    country: Mapped[str] = mapped_column(String(2))


class Creditor(Base):
    __tablename__ = "creditors"
    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)


class Portfolio(Base):
    """A creditor's portfolio as assigned to one site: two sites sharing a store each have their own (see
    docs/operations.md, several sites on one PostgreSQL database)."""

    __tablename__ = "portfolios"
    __table_args__ = (UniqueConstraint("site", "creditor_id", "code"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    creditor_id: Mapped[int] = mapped_column(ForeignKey("creditors.id"))
    code: Mapped[str] = mapped_column(String(64))
    site: Mapped[str] = mapped_column(String(64), index=True)
    country: Mapped[str] = mapped_column(String(2))
    creditor: Mapped[Creditor] = relationship()


class Debtor(Base):
    __tablename__ = "debtors"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    region: Mapped[str | None] = mapped_column(String(8))  # ISO 3166-2 of the address, from the creditor
    timezone: Mapped[str | None] = mapped_column(String(64))  # IANA zone of the address, from the creditor
    phones: Mapped[list[Phone]] = relationship(back_populates="debtor", order_by="Phone.position")


class Phone(Base):
    __tablename__ = "phones"
    __table_args__ = (UniqueConstraint("debtor_id", "e164"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    debtor_id: Mapped[int] = mapped_column(ForeignKey("debtors.id"))
    e164: Mapped[str] = mapped_column(String(20), index=True)
    position: Mapped[int] = mapped_column(Integer, default=0)
    do_not_call: Mapped[bool] = mapped_column(Boolean, default=False)
    do_not_text: Mapped[bool] = mapped_column(Boolean, default=False)
    invalid: Mapped[bool] = mapped_column(Boolean, default=False)  # the network said the number does not exist
    debtor: Mapped[Debtor] = relationship(back_populates="phones")


class Account(Base):
    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("portfolio_id", "ref"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    portfolio_id: Mapped[int] = mapped_column(ForeignKey("portfolios.id"))
    ref: Mapped[str] = mapped_column(String(64), index=True)
    debtor_id: Mapped[int] = mapped_column(ForeignKey("debtors.id"), index=True)
    balance: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(16), default="active")  # active | withdrawn | paid
    next_contact_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    due_on: Mapped[date | None] = mapped_column(Date)  # the day the debt fell due, when the creditor says
    risk_score: Mapped[float | None] = mapped_column(Float)  # the creditor's risk score, when it gives one
    portfolio: Mapped[Portfolio] = relationship()
    debtor: Mapped[Debtor] = relationship()


class ContactAttempt(Base):
    """One call the gate allowed. Created (state ``placing``) before the dialer sees it: never re-sent."""

    __tablename__ = "contact_attempts"
    __table_args__ = (Index("ix_contact_attempts_account_requested", "account_id", "requested_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    phone: Mapped[str] = mapped_column(String(20), index=True)
    state: Mapped[str] = mapped_column(String(16))  # placing | finished
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime)
    outcome: Mapped[str | None] = mapped_column(String(16))
    # The vendor's cause and the dialer's notes, whole. SQLite keeps it whole as VARCHAR(64) (no length is
    # enforced), and a rebuild to change the type is refused by the rows that refer to the attempts.
    raw_cause: Mapped[str | None] = mapped_column(Text().with_variant(String(64), "sqlite"))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    agent: Mapped[str | None] = mapped_column(String(64))
    vendor_call_id: Mapped[str | None] = mapped_column(String(128))
    disposition: Mapped[str | None] = mapped_column(String(32))
    #: The dialer connected the answered call to an agent (migration 0011_workspace): a disposition is awaited.
    connected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    #: Whether the disposition says the debtor was reached (``None``: it does not say, or none yet); an answered
    #: call is a conversation for the compliance history unless this is false.
    right_party: Mapped[bool | None] = mapped_column(Boolean)
    account: Mapped[Account | None] = relationship()


class RecordingRow(Base):
    """Catalog of recordings: ``found`` → ``verified`` (archived in the store and checked there) → ``purged``
    after retention (``failed`` is retried; ``missing``: the local file vanished before it was archived)."""

    __tablename__ = "recordings"
    id: Mapped[int] = mapped_column(primary_key=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("contact_attempts.id"))
    local_path: Mapped[str] = mapped_column(String(1024), unique=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    duration_s: Mapped[float] = mapped_column(Float)
    agent: Mapped[str | None] = mapped_column(String(64), index=True)
    size: Mapped[int | None] = mapped_column(BigInteger)
    md5: Mapped[str | None] = mapped_column(String(32))
    sha256: Mapped[str | None] = mapped_column(String(64))
    store_key: Mapped[str | None] = mapped_column(String(1024))
    location: Mapped[str | None] = mapped_column(String(2048))
    error: Mapped[str | None] = mapped_column(Text)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    found_at: Mapped[datetime] = mapped_column(UTCDateTime)
    verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    local_deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    retain_until: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    legal_hold: Mapped[bool] = mapped_column(Boolean, default=False)
    purged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    attempt: Mapped[ContactAttempt | None] = relationship()


class SmsRow(Base):
    __tablename__ = "sms_messages"
    __table_args__ = (Index("ix_sms_messages_account_created", "account_id", "created_at"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    phone: Mapped[str] = mapped_column(String(20), index=True)
    text: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(16))
    gateway_id: Mapped[str | None] = mapped_column(String(128), index=True)
    detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ActivityRow(Base):
    """What the creditor's activity export sends, in ``seq`` order."""

    __tablename__ = "activities"
    seq: Mapped[int] = mapped_column(primary_key=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    phone: Mapped[str | None] = mapped_column(String(20))
    #: a call's outcome or disposition, an SMS's state, a payment's reference (PAYMENT_REF_MAX, whole: 0018)
    outcome: Mapped[str | None] = mapped_column(String(120))
    amount: Mapped[Decimal | None] = mapped_column(Money)
    due_date: Mapped[date | None] = mapped_column(Date)
    agent: Mapped[str | None] = mapped_column(String(64))
    #: the call of a ``call_attempt`` activity (and of a promise made on it)
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("contact_attempts.id"), index=True)
    account: Mapped[Account] = relationship()


class ExportCursor(Base):
    __tablename__ = "export_cursors"
    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    creditor: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    #: The last seq of the export being sent: after a crash the same activities are sent again, no more.
    pending_seq: Mapped[int | None] = mapped_column(BigInteger)


class ImportBatch(Base):
    __tablename__ = "import_batches"
    __table_args__ = (UniqueConstraint("site", "content_sha256"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    site: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(1024))
    content_sha256: Mapped[str] = mapped_column(String(64))
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime)
    counts: Mapped[dict[str, int]] = mapped_column(JSON)


class QuarantinedRow(Base):
    __tablename__ = "quarantined_rows"
    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("import_batches.id"), index=True)
    line: Mapped[int] = mapped_column(Integer)
    field: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(Text)


class AuditEntry(Base):
    """Append-only: the database refuses UPDATE and DELETE on this table (triggers in the migration)."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(256))
    details: Mapped[dict[str, Any]] = mapped_column(JSON)


# --- SMS: templates, inbound messages, opt-out (migration 0004_sms) ----------------------------------


class InboundSmsRow(Base):
    """A message a debtor sent (MO) as the gateway delivered it; ``opt_out`` is the keyword when it was one."""

    __tablename__ = "sms_inbound"
    __table_args__ = (UniqueConstraint("site", "gateway_id"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    phone: Mapped[str] = mapped_column(String(32), index=True)  # E.164 when it parses, else as received
    text: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime)
    gateway_id: Mapped[str | None] = mapped_column(String(128))
    opt_out: Mapped[str | None] = mapped_column(String(16))


class SmsOptOut(Base):
    """A number that asked not to be texted: kept apart from ``phones`` so a later import cannot undo it."""

    __tablename__ = "sms_opt_outs"
    e164: Mapped[str] = mapped_column(String(20), primary_key=True)
    site: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    keyword: Mapped[str] = mapped_column(String(16))
    inbound_id: Mapped[int | None] = mapped_column(ForeignKey("sms_inbound.id"))


# --- creditor exchange: files, mappings, export sequences (migration 0005_crm) -----------------------


class ReportedPayment(Base):
    """A payment a creditor reported, applied once: the same payment in a later file is recognised by ``key``
    (the creditor's payment reference, else day and amount; ``None`` when the creditor gives neither)."""

    __tablename__ = "reported_payments"
    __table_args__ = (UniqueConstraint("account_id", "key"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    key: Mapped[str | None] = mapped_column(String(128))
    batch_id: Mapped[int] = mapped_column(ForeignKey("import_batches.id"), index=True)
    amount: Mapped[Decimal] = mapped_column(Money)
    paid_on: Mapped[date | None] = mapped_column(Date)


# --- supervisors: users, roles, grants, sessions (migration 0006_web) --------------------------------


class WebUser(Base):
    """A person who signs in to the node's pages; ``role`` is supervisor, auditor, admin or agent."""

    __tablename__ = "web_users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    password_hash: Mapped[str] = mapped_column(String(256))
    role: Mapped[str] = mapped_column(String(16))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    #: An agent's identity at the site's dialer (queue member interface, SIP agent, simulator seat); 0011_workspace.
    #: Unique among the users of each site (the directory checks it; 0017_extension_per_site)
    extension: Mapped[str | None] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    grants: Mapped[list[WebGrant]] = relationship(cascade="all, delete-orphan", order_by="WebGrant.id")


class WebGrant(Base):
    """A site a user may see; ``creditor`` and ``portfolio`` narrow it to one portfolio (both ``None``: all of
    the site's). A ``portfolio`` without ``creditor`` is a grant from before 0008 that grants nothing."""

    __tablename__ = "web_grants"
    __table_args__ = (UniqueConstraint("user_id", "site", "creditor", "portfolio"),)
    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("web_users.id", ondelete="CASCADE"), index=True)
    site: Mapped[str] = mapped_column(String(64))
    creditor: Mapped[str | None] = mapped_column(String(64))
    portfolio: Mapped[str | None] = mapped_column(String(64))


class WebSession(Base):
    """A signed-in browser: only the sha256 of its cookie token is stored."""

    __tablename__ = "web_sessions"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("web_users.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class LoginThrottle(Base):
    """Sign-in tries per key (``pair:NAME@IP`` or ``addr:IP``) counted since ``window_start``; no try is checked
    before ``locked_until``. Kept in the store so a restart resets nothing."""

    __tablename__ = "web_login_throttle"
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime] = mapped_column(UTCDateTime)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)


class WebPreSession(Base):
    """A browser at the sign-in form (migration 0009_web_presessions): the form's CSRF token is the one issued
    with this pre-session's cookie, so nobody else can choose it. Used once."""

    __tablename__ = "web_presessions"
    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    csrf: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


# --- compliance: debtor-requested hours, phone line types (migration 0007_contact_prefs) -------------


class ContactHours(Base):
    """The local hours a debtor asked to be contacted in, per account (``hours``: ``{"mon-fri": "18:00-20:00"}``),
    with the instrument recording the request (Ley 2300 art. 3 lets such a request replace the law's hours)."""

    __tablename__ = "contact_hours"
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    hours: Mapped[dict[str, str]] = mapped_column(JSON)
    instrument: Mapped[str | None] = mapped_column(String(512))
    source: Mapped[str] = mapped_column(String(16))  # operator | creditor
    set_by: Mapped[str] = mapped_column(String(128))
    set_at: Mapped[datetime] = mapped_column(UTCDateTime)


class PhoneLineType(Base):
    """What a debtor's number is: ``personal`` (residence, cell, given as personal), ``work``; no row: unknown."""

    __tablename__ = "phone_line_types"
    phone_id: Mapped[int] = mapped_column(ForeignKey("phones.id", ondelete="CASCADE"), primary_key=True)
    line_type: Mapped[str] = mapped_column(String(8))
    source: Mapped[str] = mapped_column(String(16))  # operator | creditor
    set_by: Mapped[str] = mapped_column(String(128))
    set_at: Mapped[datetime] = mapped_column(UTCDateTime)


# --- agents' workspace: dispositions, promises, callbacks, stopped accounts (migration 0011_workspace) ---


class DispositionRow(Base):
    """What the agent recorded for one call attempt: at most one per attempt (a double submit is refused)."""

    __tablename__ = "dispositions"
    id: Mapped[int] = mapped_column(primary_key=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    attempt_id: Mapped[int] = mapped_column(ForeignKey("contact_attempts.id"), unique=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"), index=True)
    code: Mapped[str] = mapped_column(String(32))
    flags: Mapped[list[str]] = mapped_column(JSON)
    agent: Mapped[str] = mapped_column(String(64), index=True)
    note: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class PromiseRow(Base):
    """A promise to pay: one instalment or a plan; ``pending`` → ``kept`` | ``broken`` from reported payments."""

    __tablename__ = "promises"
    id: Mapped[int] = mapped_column(primary_key=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    disposition_id: Mapped[int] = mapped_column(ForeignKey("dispositions.id"))
    state: Mapped[str] = mapped_column(String(8), index=True)
    total: Mapped[Decimal] = mapped_column(Money)
    currency: Mapped[str] = mapped_column(String(3))
    agent: Mapped[str] = mapped_column(String(64))
    made_at: Mapped[datetime] = mapped_column(UTCDateTime)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    instalments: Mapped[list[PromiseInstalment]] = relationship(
        cascade="all, delete-orphan", order_by="PromiseInstalment.position"
    )
    account: Mapped[Account] = relationship()


class PromiseInstalment(Base):
    __tablename__ = "promise_instalments"
    id: Mapped[int] = mapped_column(primary_key=True)
    promise_id: Mapped[int] = mapped_column(ForeignKey("promises.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    amount: Mapped[Decimal] = mapped_column(Money)
    due: Mapped[date] = mapped_column(Date)


class CallbackRow(Base):
    """A time the debtor chose to be called back, for its agent alone (``agent``) or for anyone (``None``);
    ``pending`` until a call about the account is dispositioned at or after it (``done``)."""

    __tablename__ = "callbacks"
    id: Mapped[int] = mapped_column(primary_key=True)
    site: Mapped[str] = mapped_column(String(64), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    disposition_id: Mapped[int] = mapped_column(ForeignKey("dispositions.id"))
    phone: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    agent: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(8), index=True)
    account: Mapped[Account] = relationship()


class AccountStop(Base):
    """An account no one may contact any more (cease contact, dispute, deceased), kept apart from ``accounts`` so
    a creditor's later update of the account cannot undo it; the compliance gate reads it as the status."""

    __tablename__ = "account_stops"
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True)
    status: Mapped[str] = mapped_column(String(16))  # ceased | disputed | deceased
    agent: Mapped[str] = mapped_column(String(64))
    attempt_id: Mapped[int | None] = mapped_column(ForeignKey("contact_attempts.id"))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class SiteLeaseRow(Base):
    """Which node of a site works, on PostgreSQL (:mod:`cartera.core.store.site_lease`): its holder renews the
    lease before ``expires_at``; a standby takes an expired lease with the next fencing ``token``."""

    __tablename__ = "site_leases"
    site: Mapped[str] = mapped_column(String(64), primary_key=True)
    token: Mapped[int] = mapped_column(BigInteger)
    holder: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
