"""The clock a site's node runs on: the system's, or a simulated one that resumes where its store left off."""

from __future__ import annotations

from sqlalchemy import func, select

from cartera.core.clock import Clock, SimulatedClock, SystemClock
from cartera.core.config import SiteConfig
from cartera.core.store.database import Database
from cartera.core.store.schema import AuditEntry


def make_clock(site: SiteConfig, db: Database) -> Clock:
    """The site's clock. A simulated clock resumes at the newest audited instant of the store (every gate
    decision is audited): time never runs backwards for a store, so a second run continues the first."""
    clock = site.section.clock
    if clock.mode != "simulated" or clock.start is None:
        return SystemClock()
    with db.session() as session:
        latest = session.scalar(select(func.max(AuditEntry.at)).where(AuditEntry.site == site.name))
    return SimulatedClock(max(clock.start, latest) if latest else clock.start, clock.speed)
