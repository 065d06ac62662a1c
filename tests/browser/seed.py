"""A site ``t`` with real archived recordings, activities and users, for the supervisors' page tests."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy import select

from cartera.core.models import ActivityKind, Recording
from cartera.core.store.schema import Account, ActivityRow, ContactAttempt, Creditor, Debtor, Portfolio, RecordingRow
from cartera.node import Node
from cartera.plugins.dialers.simulator.audio import RATE, conversation, write_wav
from cartera.portfolio.identity import PortfolioKey
from cartera.users.directory import Grant, Role, UserDirectory

PASSWORD = "correct horse battery"
#: name: (role, grants)
USERS: dict[str, tuple[Role, tuple[Grant, ...]]] = {
    "ana": (Role.SUPERVISOR, (Grant("t"),)),
    "beto": (Role.SUPERVISOR, (Grant("t", PortfolioKey("BANCO", "VEHICULOS")),)),
    "carla": (Role.AUDITOR, (Grant("t"),)),
    "otro": (Role.SUPERVISOR, (Grant("lima"),)),
}
DAY = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # 10:00 in Bogotá


@dataclass(frozen=True)
class Seeded:
    recordings: dict[str, int]  #: account ref: recording id
    sha256: dict[int, str]
    foreign_id: int  #: a recording of another site in the same store
    pending_id: int  #: catalogued, not archived yet


def seed(node: Node, spool: Path, first_call_seconds: float = 12.0) -> Seeded:
    """Three answered calls with recordings archived through the site's store, one still pending, one of
    another site, a promise kept by a payment, and the users of :data:`USERS`."""
    assert node.archiver is not None
    spool.mkdir(parents=True, exist_ok=True)
    rng = random.Random(9)
    calls = [
        ("BCO-1", "TARJETAS", "+573001112233", "agent-01", first_call_seconds),
        ("BCO-2", "TARJETAS", "+573004445566", "agent-02", 8.0),
    ]
    calls.append(("VEH-7", "VEHICULOS", "+573007778899", "agent-01", 6.0))
    recordings: dict[str, int] = {}
    with node.db.session() as session:
        creditor = Creditor(code="BANCO")
        portfolios = {
            code: Portfolio(creditor=creditor, code=code, site="t", country="CO") for code in ("TARJETAS", "VEHICULOS")
        }
        attempts: list[tuple[str, ContactAttempt, float]] = []
        for index, (ref, portfolio, phone, agent, seconds) in enumerate(calls):
            account = Account(
                portfolio=portfolios[portfolio],
                ref=ref,
                debtor=Debtor(name=f"Deudor {ref}"),
                balance=Decimal(500000),
                currency="COP",
                status="active",
                updated_at=DAY,
            )
            started = DAY + timedelta(minutes=10 * index)
            attempt = ContactAttempt(
                site="t",
                account=account,
                phone=phone,
                state="finished",
                requested_at=started,
                outcome="answered",
                started_at=started,
                answered_at=started,
                ended_at=started + timedelta(seconds=seconds),
                agent=agent,
                disposition="promise_to_pay" if ref == "BCO-1" else "right_party_contact",
                right_party=True,  # as the workspace stores a right-party code (cartera.workspace.dispositions)
            )
            session.add(attempt)
            attempts.append((ref, attempt, seconds))
        session.add(
            ContactAttempt(
                site="t",
                account=attempts[1][1].account,
                phone="+573004445566",
                state="finished",
                requested_at=DAY + timedelta(hours=1),
                outcome="no_answer",
            )
        )
        session.flush()
        first = attempts[0][1].account
        assert first is not None
        session.add(
            ActivityRow(
                site="t",
                kind=ActivityKind.PROMISE_TO_PAY.value,
                at=DAY,
                account=first,
                amount=Decimal(150000),
                due_date=date(2026, 11, 30),
            )
        )
        session.add(
            ActivityRow(
                site="t",
                kind=ActivityKind.PAYMENT.value,
                at=DAY + timedelta(days=2),
                account=first,
                amount=Decimal("150000.50"),
            )
        )
        ids = [attempt.id for _, attempt, _ in attempts]
    for index, ((ref, _, _, agent, seconds), attempt_id) in enumerate(zip(calls, ids, strict=True)):
        path = spool / f"call-{attempt_id}.wav"
        write_wav(path, conversation(rng, round(seconds * RATE)))
        began = DAY + timedelta(minutes=10 * index)
        recordings[ref] = node.archiver.catalog(Recording(path, attempt_id, began, seconds, agent=agent))
    run = node.archiver.run_once()
    assert run.archived == len(ids), run
    pending = spool / "pending.wav"
    write_wav(pending, conversation(rng, RATE))
    with node.db.session() as session:
        foreign = RecordingRow(
            site="lima",
            local_path=str(spool / "lima.wav"),
            state="verified",
            started_at=DAY,
            duration_s=3.0,
            found_at=DAY,
            failures=0,
            legal_hold=False,
            sha256="0" * 64,
            store_key="lima/x.wav",
        )
        waiting = RecordingRow(
            site="t",
            local_path=str(pending.resolve()),
            state="found",
            started_at=DAY,
            duration_s=1.0,
            found_at=DAY,
            failures=0,
            legal_hold=False,
        )
        session.add_all([foreign, waiting])
        session.flush()
        foreign_id, pending_id = foreign.id, waiting.id
        catalog = select(RecordingRow.id, RecordingRow.sha256).where(RecordingRow.site == "t")
        digests = {row[0]: row[1] for row in session.execute(catalog)}
    directory = UserDirectory(node.db)
    for name, (role, grants) in USERS.items():
        directory.add(name, PASSWORD, role, grants)
    return Seeded(recordings, {k: v for k, v in digests.items() if v is not None}, foreign_id, pending_id)


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
