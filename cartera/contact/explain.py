"""The compliance gate's explanation of a contact: what it would decide at an instant, contacting no one."""

from __future__ import annotations

from datetime import datetime

from cartera.contact.compliance import Decision, Subject
from cartera.contact.targets import Targets
from cartera.core.models import Channel
from cartera.core.store.database import Database


class GateExplainer:
    """Explains the gate's decisions for one site's contacts, for supervisors and auditors."""

    def __init__(self, targets: Targets, db: Database) -> None:
        self.targets, self.db = targets, db

    def explain(
        self, *, phone: str | None, account: int | str | None, channel: Channel, at: datetime, actor: str
    ) -> tuple[Decision, Subject]:
        """What the gate would decide for this contact at ``at`` (the account's history as it was then); audited
        as ``compliance.explain``. ``account``: an id or a reference."""
        with self.db.session() as session:
            target = self.targets.find(session, channel, phone, account, at=at, as_of=True)
            decision = self.targets.gate.explain(session, target.subject, at, actor)
        return decision, target.subject
