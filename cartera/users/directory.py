"""Users of the supervisors' pages: argon2 password hashes, roles, and the sites and portfolios granted."""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, selectinload

from cartera.core.errors import NotFound, UsageError
from cartera.core.store.database import Database
from cartera.core.store.schema import WebGrant, WebSession, WebUser
from cartera.portfolio.identity import PortfolioKey

MIN_PASSWORD_LENGTH = 10
#: Why ``--portfolio`` is refused for an admin: its role is the whole of each site, whatever a grant says.
ADMIN_SEES_ALL = (
    "an admin sees every portfolio of its sites: it takes no portfolio grants; "
    "give a restricted user the supervisor or auditor role"
)
#: Why ``--extension`` is refused without the agent role, or needed with it.
AGENT_EXTENSION = "an agent needs --extension (its identity at the site's dialer), and only an agent takes one"
_EXTENSION = re.compile(r"[A-Za-z0-9._/@:-]{1,64}")
_hasher = PasswordHasher()


@cache
def _dummy_hash() -> str:
    """Verified against when the name is unknown, so a wrong name costs as much time as a wrong password."""
    return _hasher.hash("not a password of anyone")


class Role(enum.StrEnum):
    """supervisor: recordings and KPIs; auditor: also the audit view; admin: also every portfolio of its sites;
    agent: the agent's page, bound to an extension (its identity at the site's dialer)."""

    SUPERVISOR = "supervisor"
    AUDITOR = "auditor"
    ADMIN = "admin"
    AGENT = "agent"


@dataclass(frozen=True)
class Grant:
    site: str
    portfolio: PortfolioKey | None = None  #: None: every portfolio of the site
    #: A bare portfolio code granted before portfolios were (creditor, code), which migration 0008 could not
    #: complete: it grants nothing, and the user is refused until an admin grants ``CREDITOR/CODE``.
    unresolved: str | None = None

    def __str__(self) -> str:
        if self.unresolved is not None:
            return f"{self.site}:{self.unresolved} (no creditor: grant CREDITOR/CODE again)"
        return f"{self.site}:{self.portfolio or '*'}"


@dataclass(frozen=True)
class User:
    id: int
    name: str
    role: Role
    disabled: bool
    grants: tuple[Grant, ...]
    extension: str | None = None  #: an agent's identity at the site's dialer (queue member, SIP agent, seat)

    @property
    def may_audit(self) -> bool:
        return self.role in (Role.AUDITOR, Role.ADMIN)

    def sees_site(self, site: str) -> bool:
        return any(grant.site == site for grant in self.grants)

    def portfolios(self, site: str) -> frozenset[PortfolioKey] | None:
        """The portfolios of ``site`` this user may see; ``None``: all of them (and unassigned calls)."""
        grants = [grant for grant in self.grants if grant.site == site]
        if self.role is Role.ADMIN or any(g.portfolio is None and g.unresolved is None for g in grants):
            return None
        return frozenset(grant.portfolio for grant in grants if grant.portfolio is not None)

    def reach(self) -> dict[str, frozenset[PortfolioKey] | None]:
        """Each site granted, in name order, with the portfolios this user may see there (:meth:`portfolios`):
        what the company view shows on any node of a site granted."""
        return {site: self.portfolios(site) for site in sorted({grant.site for grant in self.grants})}

    def unresolved(self, site: str) -> tuple[str, ...]:
        """The bare portfolio codes granted at ``site`` that name no creditor (see :attr:`Grant.unresolved`);
        none for an admin, who sees every portfolio whatever its grants name."""
        if self.role is Role.ADMIN:
            return ()
        return tuple(g.unresolved for g in self.grants if g.site == site and g.unresolved is not None)

    def described_grants(self) -> str:
        """The grants as what they let the user see: an admin's are whole sites, and a portfolio stored in one
        (granted before admins were refused them) is named as ignored rather than shown as a restriction."""
        if self.role is not Role.ADMIN:
            return ", ".join(map(str, self.grants)) or "none"
        sites = dict.fromkeys(grant.site for grant in self.grants)
        described = []
        for site in sites:
            ignored = [str(g.portfolio or g.unresolved) for g in self.grants if g.site == site and not _whole(g)]
            note = f"; {', '.join(ignored)} ignored" if ignored else ""
            described.append(f"{site}:* (admin: every portfolio{note})")
        return ", ".join(described) or "none"


class UserDirectory:
    """Users and grants in the store; ``now`` is wall-clock time (sessions do not follow a simulated clock)."""

    def __init__(self, db: Database, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.db, self.now = db, now

    def add(self, name: str, password: str, role: Role, grants: Sequence[Grant], extension: str | None = None) -> User:
        """A new user; an agent needs the ``extension`` no other user has, and only an agent takes one."""
        name = name.strip()
        if role is Role.ADMIN and not all(_whole(grant) for grant in grants):
            raise UsageError(f"user {name!r}: {ADMIN_SEES_ALL}")
        if (role is Role.AGENT) != (extension is not None):
            raise UsageError(f"user {name!r}: {AGENT_EXTENSION}")
        if extension is not None and not _EXTENSION.fullmatch(extension):
            raise UsageError(f"extension {extension!r}: 1 to 64 of letters, digits and . _ - / @ :")
        if not name or len(name) > 64 or not name.isprintable() or " " in name:
            raise UsageError(f"user name {name!r}: 1 to 64 printable characters, no spaces")
        if len(password) < MIN_PASSWORD_LENGTH:
            raise UsageError(f"password for {name!r}: at least {MIN_PASSWORD_LENGTH} characters")
        with self.db.session() as session:
            if session.scalar(select(WebUser.id).where(WebUser.name == name)) is not None:
                raise UsageError(f"user {name!r} exists already")
            # a name equal to an extension would read as that agent at the dialer: names and extensions never meet
            holder = session.scalar(select(WebUser.name).where(WebUser.extension == name))
            if holder is not None:
                raise UsageError(f"user name {name!r} is the extension of user {holder!r}")
            if extension is not None:
                for site in dict.fromkeys(grant.site for grant in grants):
                    _free_at(session, site, extension, name)
                if session.scalar(select(WebUser.id).where(WebUser.name == extension)) is not None:
                    raise UsageError(f"extension {extension!r}: user {extension!r} is named so")
            row = WebUser(
                name=name,
                password_hash=_hasher.hash(password),
                role=role.value,
                disabled=False,
                created_at=self.now(),
                grants=_rows(grants),
                extension=extension,
            )
            session.add(row)
            session.flush()
            return _user(row)

    def grant(self, name: str, site: str, grants: Sequence[Grant]) -> User:
        """Replace what ``name`` is granted at ``site`` with ``grants`` (other sites' grants stay)."""
        with self.db.session() as session:
            row = session.scalar(select(WebUser).options(selectinload(WebUser.grants)).where(WebUser.name == name))
            if row is None:
                raise NotFound(f"no user {name!r}")
            if row.role == Role.ADMIN and not all(_whole(grant) for grant in grants):
                raise UsageError(f"user {name!r}: {ADMIN_SEES_ALL}")
            if row.extension is not None and grants:
                _free_at(session, site, row.extension, name)
            row.grants = [grant for grant in row.grants if grant.site != site]
            session.flush()
            row.grants.extend(_rows(grants))
            session.flush()
            return _user(row)

    def everyone(self) -> list[User]:
        with self.db.session() as session:
            rows = session.scalars(select(WebUser).options(selectinload(WebUser.grants)).order_by(WebUser.name))
            return [_user(row) for row in rows]

    def by_extension(self, extension: str) -> User | None:
        """The enabled agent bound to ``extension`` (a dialer's agent identity), else ``None``."""
        with self.db.reading() as session:
            row = session.scalar(
                select(WebUser)
                .options(selectinload(WebUser.grants))
                .where(WebUser.extension == extension, WebUser.disabled.is_(False))
            )
            return _user(row) if row else None

    def get(self, user_id: int) -> User | None:
        with self.db.session() as session:
            row = session.get(WebUser, user_id, options=[selectinload(WebUser.grants)])
            return _user(row) if row else None

    def disable(self, name: str) -> User:
        with self.db.session() as session:
            row = session.scalar(select(WebUser).options(selectinload(WebUser.grants)).where(WebUser.name == name))
            if row is None:
                raise NotFound(f"no user {name!r}")
            row.disabled = True
            session.execute(delete(WebSession).where(WebSession.user_id == row.id))  # signed out everywhere
            return _user(row)

    def authenticate(self, name: str, password: str) -> User | None:
        """The enabled user with that name and password, else ``None`` (same work either way). The hash is
        checked outside any transaction: SQLite's write lock must not wait on it."""
        with self.db.reading() as session:
            row = session.scalar(select(WebUser).options(selectinload(WebUser.grants)).where(WebUser.name == name))
        try:
            _hasher.verify(row.password_hash if row else _dummy_hash(), password)
        except (VerificationError, InvalidHashError):
            return None
        if row is None or row.disabled:
            return None
        if _hasher.check_needs_rehash(row.password_hash):
            rehashed = _hasher.hash(password)
            with self.db.session() as session:
                session.execute(update(WebUser).where(WebUser.id == row.id).values(password_hash=rehashed))
        return _user(row)


def site_agent(session: Session, site: str, extension: str) -> str | None:
    """The enabled agent user granted ``site`` that holds ``extension`` there, else ``None``: a user of another
    site of the store holding the same extension is not this site's seat."""
    return session.scalar(
        select(WebUser.name).where(
            WebUser.extension == extension,
            WebUser.role == Role.AGENT.value,
            WebUser.disabled.is_(False),
            WebUser.grants.any(WebGrant.site == site),
        )
    )


def _free_at(session: Session, site: str, extension: str, name: str) -> None:
    """Refuses ``extension`` for user ``name`` when another user granted ``site`` holds it (unique per site)."""
    holder = session.scalar(
        select(WebUser.name).where(
            WebUser.extension == extension, WebUser.name != name, WebUser.grants.any(WebGrant.site == site)
        )
    )
    if holder is not None:
        raise UsageError(f"extension {extension!r} is user {holder!r}'s already at site {site!r}")


def _whole(grant: Grant) -> bool:
    """``grant`` is of a whole site (no portfolio, resolved or not)."""
    return grant.portfolio is None and grant.unresolved is None


def _rows(grants: Sequence[Grant]) -> list[WebGrant]:
    return [
        WebGrant(
            site=grant.site,
            creditor=grant.portfolio.creditor if grant.portfolio else None,
            portfolio=grant.portfolio.code if grant.portfolio else grant.unresolved,
        )
        for grant in dict.fromkeys(grants)
    ]


def _grant(row: WebGrant) -> Grant:
    if row.portfolio is None:
        return Grant(row.site)
    if row.creditor is None:
        return Grant(row.site, unresolved=row.portfolio)
    return Grant(row.site, PortfolioKey(row.creditor, row.portfolio))


def _user(row: WebUser) -> User:
    grants = tuple(_grant(grant) for grant in row.grants)
    return User(
        id=row.id, name=row.name, role=Role(row.role), disabled=row.disabled, grants=grants, extension=row.extension
    )
