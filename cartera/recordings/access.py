"""Finding and fetching recordings for supervisors: within the sites and portfolios the asker may see (this site
by default; the company's sites granted to a user when they share the store), checksum-verified, every access
audited."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from sqlalchemy import ColumnElement, Select, and_, false, or_, select
from sqlalchemy.orm import Session

from cartera.core.adapters import RecordingStore
from cartera.core.audit import audit
from cartera.core.checksums import file_checksums
from cartera.core.clock import Clock
from cartera.core.errors import CarteraError, IntegrityError, NotFound, StoreUnavailable, UsageError
from cartera.core.store.database import Database
from cartera.core.store.schema import Account, ContactAttempt, Creditor, Portfolio, RecordingRow
from cartera.portfolio.identity import PortfolioKey, Reference, in_portfolios

MAX_URL_SECONDS = 15 * 60
T = TypeVar("T")
#: The sites searched, each with the portfolios within reach there (``None``: all of them, and recordings of no
#: account): what a user's grants let it see across the company's sites on one store.
Reach = Mapping[str, frozenset[PortfolioKey] | None]


@dataclass(frozen=True)
class RecordingView:
    id: int
    site: str
    account: str | None
    phone: str | None
    agent: str | None
    outcome: str | None
    started_at: str
    duration_s: float
    size: int | None
    sha256: str | None
    location: str | None
    state: str
    legal_hold: bool = False
    retain_until: str | None = None
    portfolio: str | None = None  #: ``CREDITOR/CODE``

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SearchFilters:
    account: str | None = None
    phone: str | None = None
    agent: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: int = 500
    portfolio: str | None = None  #: ``CODE`` or ``CREDITOR/CODE``
    outcome: str | None = None
    #: The portfolios the asker may see (``None``: all, and recordings of no account).
    within: frozenset[PortfolioKey] | None = None
    offset: int = 0
    #: Search these sites, each within its portfolios, instead of this site ``within`` (the company view).
    sites: Reach | None = None
    as_user: str | None = None  #: the web user whose grants ``sites`` are (the CLI's ``--user``), for the audit


class RecordingLibrary:
    """A site's recordings for those who may see them: search, and get, URL or hold one, each in one pass with
    its audit row; ``store`` gives the site's recording store, started on first use, and ``peer_store`` another
    site's of the same store (``None`` when this node does not know that site's store configuration)."""

    def __init__(
        self,
        site: str,
        db: Database,
        clock: Clock,
        store: Callable[[], RecordingStore[Any]],
        peer_store: Callable[[str], RecordingStore[Any] | None] = lambda _site: None,
    ) -> None:
        self.site, self.db, self.clock, self.store, self.peer_store = site, db, clock, store, peer_store

    def store_of(self, site: str) -> Callable[[], RecordingStore[Any]] | None:
        """The recording store ``site``'s recordings are kept in, as this node reaches it; ``None`` when this node
        knows no store of that site (its recordings are fetched at that site's node)."""
        if site == self.site:
            return self.store
        store = self.peer_store(site)
        return None if store is None else lambda: store

    def sites(self) -> list[str]:
        """This site and every other site with recordings in the store, by name."""
        with self.db.session() as session:
            return sorted({self.site, *session.scalars(select(RecordingRow.site).distinct())})

    def search(self, filters: SearchFilters, actor: str) -> list[RecordingView]:
        reach = filters.sites if filters.sites is not None else {self.site: filters.within}
        query = (
            self._catalog(reach.keys())
            .order_by(RecordingRow.started_at.desc(), RecordingRow.id.desc())
            .limit(filters.limit)
            .offset(filters.offset)
        )
        if filters.account:
            account = Reference.parse(filters.account, "account", 3)
            query = query.where(account.where(Creditor.code, Portfolio.code, Account.ref))
        if filters.phone:
            query = query.where(ContactAttempt.phone == filters.phone)
        if filters.agent:
            query = query.where(RecordingRow.agent == filters.agent)
        if filters.since:
            query = query.where(RecordingRow.started_at >= filters.since)
        if filters.until:
            query = query.where(RecordingRow.started_at < filters.until)
        if filters.portfolio:
            portfolio = Reference.parse(filters.portfolio, "portfolio", 2)
            query = query.where(portfolio.where(Creditor.code, Portfolio.code))
        if filters.outcome:
            query = query.where(ContactAttempt.outcome == filters.outcome)
        query = query.where(_within(reach))
        with self.db.session() as session:
            views = [_view(*row) for row in session.execute(query)]
        ignored = ("limit", "offset", "sites")
        used = {k: str(v) for k, v in asdict(filters).items() if v is not None and k not in ignored}
        here = reach.get(self.site)
        if here is not None:
            used["within"] = ", ".join(sorted(map(str, here)))
        if set(reach) != {self.site}:
            used["sites"] = ", ".join(f"{site}:{_described(within)}" for site, within in sorted(reach.items()))
        self._audit(actor, "recordings.search", "recordings", filters=used, results=len(views))
        return views

    def view(
        self, recording_id: int, within: frozenset[PortfolioKey] | None = None, *, sites: Reach | None = None
    ) -> RecordingView | None:
        """This site's recording ``recording_id`` when it is in the portfolios ``within`` (``None``: any), or
        with ``sites``, a recording of one of those sites within its portfolios there; unaudited: for callers
        that audit the access themselves."""
        found = self._find(recording_id, sites if sites is not None else {self.site: within})
        return found[0] if found else None

    def deliver(
        self,
        recording_id: int,
        actor: str,
        action: str,
        send: Callable[[RecordingView, str], tuple[T, dict[str, Any]]],
        *,
        within: frozenset[PortfolioKey] | None = None,
        sites: Reach | None = None,
        refusal: str | None = None,
    ) -> tuple[RecordingView, T]:
        """One pass over an archived recording: view (one catalog read, within the portfolios ``within`` of this
        site, or of ``sites``), ``send`` (fetch and verify, given the view and store key; returns its result and
        what the audit row records), audit (one ``action`` row, naming the recording's site when it is
        another's). An unknown id, or one outside reach, raises NotFound (audited as ``refusal`` when given); a
        recording not archived and verified raises UsageError."""
        subject = f"recording:{recording_id}"
        found = self._find(recording_id, sites if sites is not None else {self.site: within})
        if found is None:
            if refusal is not None:
                self._audit(actor, refusal, subject, reason="not found at this site")
            raise NotFound(f"no recording {recording_id} at site {self.site!r}")
        view, key = found
        if view.state != "verified" or view.sha256 is None or key is None:
            raise UsageError(f"recording {recording_id} is {view.state}, not archived and verified")
        result, details = send(view, key)
        if view.site != self.site:
            details = {**details, "recording_site": view.site}
        self._audit(actor, action, subject, **details)
        return view, result

    def get(self, recording_id: int, destination: Path, actor: str) -> RecordingView:
        """Write the recording to ``destination`` after checking its sha256 against the catalog."""
        store = self.store()
        destination = destination.resolve()

        def write(view: RecordingView, key: str) -> tuple[None, dict[str, Any]]:
            fetch_verified(store, key, view, destination)
            return None, {"sha256": view.sha256, "destination": str(destination), "portfolio": view.portfolio}

        return self.deliver(recording_id, actor, "recordings.get", write, refusal="recordings.get_denied")[0]

    def url(self, recording_id: int, expires_s: int, actor: str) -> str:
        """A presigned URL to the stored recording, valid ``expires_s`` seconds (at most 15 minutes)."""
        store = self.store()
        if not 1 <= expires_s <= MAX_URL_SECONDS:
            raise UsageError(f"--expires must be between 1 and {MAX_URL_SECONDS} seconds, got {expires_s}")

        def presign(_: RecordingView, key: str) -> tuple[str, dict[str, Any]]:
            return store.url(key, expires_s), {"key": key, "expires_s": expires_s}

        return self.deliver(recording_id, actor, "recordings.url", presign, refusal="recordings.url_denied")[1]

    def set_legal_hold(self, recording_id: int, on: bool, actor: str, reason: str) -> RecordingView:
        """Put a recording on legal hold (nothing deletes it, in the catalog or the store) or release it. The
        catalog's change and its audit row are one transaction. A hold goes to the catalog first (the purge job
        reads it), then to the store; a store that fails leaves it held in the catalog, and audited, with the
        failure audited too (``recordings.hold_store_failed``) and raised, saying to hold it again once the store
        is back. A release goes to the store first: one that fails leaves the hold on
        (``recordings.release_store_failed``)."""
        store = self.store()
        subject = f"recording:{recording_id}"
        with self.db.session() as session:
            row = session.scalar(
                select(RecordingRow).where(RecordingRow.id == recording_id, RecordingRow.site == self.site)
            )
            if row is None:
                raise NotFound(f"no recording {recording_id} at site {self.site!r}")
            if row.state == "purged":
                raise UsageError(f"recording {recording_id} was purged after its retention")
            key, retain_until, archived = row.store_key, row.retain_until, row.state == "verified"
            if on:
                row.legal_hold = True
                self._audit_in(session, actor, "recordings.hold", subject, reason=reason)
        if archived and key is not None:
            try:
                store.set_retention(key, retain_until, on)
            except CarteraError as exc:
                self._refused_by_store(recording_id, on, actor, reason, exc)
        if not on:
            with self.db.session() as session:
                session.get_one(RecordingRow, recording_id).legal_hold = False
                self._audit_in(session, actor, "recordings.release", subject, reason=reason)
        with self.db.session() as session:
            found = session.execute(self._catalog().where(RecordingRow.id == recording_id)).one()
        return _view(*found)

    def _refused_by_store(self, recording_id: int, on: bool, actor: str, reason: str, exc: CarteraError) -> NoReturn:
        """The store did not take a hold or its release: audited, and raised saying where the hold stands."""
        subject, verb = f"recording:{recording_id}", "hold" if on else "release"
        self._audit(actor, f"recordings.{verb}_store_failed", subject, reason=reason, error=str(exc))
        if on:
            told = (
                f"recording {recording_id} is on legal hold in the catalog (audited; the purge job does not delete "
                f"it), but the store did not take the hold: {exc}. Once the store is back, run `recordings hold "
                f"{recording_id}` again"
            )
        else:
            told = (
                f"recording {recording_id} is still on legal hold: the store did not release it: {exc}. Once the "
                f"store is back, run `recordings release {recording_id}` again"
            )
        raise (StoreUnavailable if isinstance(exc, StoreUnavailable) else CarteraError)(told) from exc

    def _find(self, recording_id: int, reach: Reach) -> tuple[RecordingView, str | None] | None:
        """One catalog read: the recording's view and store key, when it is of a site of ``reach`` and within
        its portfolios there."""
        query = self._catalog(reach.keys()).where(RecordingRow.id == recording_id, _within(reach))
        with self.db.session() as session:
            row = session.execute(query).first()
        return None if row is None else (_view(*row), row[0].store_key)

    def _catalog(
        self, sites: Collection[str] | None = None
    ) -> Select[RecordingRow, ContactAttempt | None, Account | None, Portfolio | None, str | None]:
        """The recordings of ``sites`` (``None``: this site's) with their attempt, account, portfolio and
        creditor, when they have one."""
        return (
            select(RecordingRow, ContactAttempt, Account, Portfolio, Creditor.code)
            .outerjoin(ContactAttempt, RecordingRow.attempt_id == ContactAttempt.id)
            .outerjoin(Account, ContactAttempt.account_id == Account.id)
            .outerjoin(Portfolio, Account.portfolio_id == Portfolio.id)
            .outerjoin(Creditor, Portfolio.creditor_id == Creditor.id)
            .where(RecordingRow.site.in_(sites) if sites is not None else RecordingRow.site == self.site)
        )

    def _audit(self, actor: str, action: str, subject: str, **details: Any) -> None:
        with self.db.session() as session:
            self._audit_in(session, actor, action, subject, **details)

    def _audit_in(self, session: Session, actor: str, action: str, subject: str, **details: Any) -> None:
        """An audit row in ``session``: committed with the change it records, or not at all."""
        audit(session, at=self.clock.now(), site=self.site, actor=actor, action=action, subject=subject, **details)


def _within(reach: Reach) -> ColumnElement[bool]:
    """Rows of a site of ``reach`` within its portfolios there; the query joins Creditor and Portfolio."""
    return or_(false(), *(and_(RecordingRow.site == site, in_portfolios(within)) for site, within in reach.items()))


def _described(within: frozenset[PortfolioKey] | None) -> str:
    return "*" if within is None else " ".join(sorted(map(str, within))) or "none"


def fetch_verified(store: RecordingStore[Any], key: str, view: RecordingView, destination: Path) -> None:
    """Write the stored object ``key`` to ``destination``, only if its sha256 is the catalog's (``view``)."""
    fd, tmp_name = tempfile.mkstemp(prefix=".cartera-", dir=destination.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as sink:
            store.read(key, sink)
        if file_checksums(tmp).sha256_hex != view.sha256:
            raise IntegrityError(f"recording {view.id}: sha256 of the stored copy does not match the catalog")
        tmp.replace(destination)
    finally:
        tmp.unlink(missing_ok=True)


def _view(
    row: RecordingRow,
    attempt: ContactAttempt | None,
    account: Account | None,
    portfolio: Portfolio | None,
    creditor: str | None,
) -> RecordingView:
    return RecordingView(
        id=row.id,
        site=row.site,
        account=account.ref if account else None,
        phone=attempt.phone if attempt else None,
        agent=row.agent,
        outcome=attempt.outcome if attempt else None,
        started_at=row.started_at.isoformat(),
        duration_s=round(row.duration_s, 1),
        size=row.size,
        sha256=row.sha256,
        location=row.location,
        state=row.state,
        legal_hold=row.legal_hold,
        retain_until=row.retain_until.isoformat() if row.retain_until else None,
        portfolio=str(PortfolioKey(creditor or "", portfolio.code)) if portfolio else None,
    )
