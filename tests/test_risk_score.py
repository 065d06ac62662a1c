"""The creditor's risk score: read from its files' column, stored on the account, and weighed into the call
list's expected value the way the site says (higher or lower scores paying more often), or ignored."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError
from sqlalchemy import select

from cartera.contact.listing import Candidate, rank, risk_weight
from cartera.contact.reach import ReachModel
from cartera.core.clock import SimulatedClock
from cartera.core.config import ListingConfig
from cartera.core.hooks import Hooks
from cartera.core.models import AssignmentBatch, AssignmentRow, RowError
from cartera.core.store.database import Database
from cartera.core.store.schema import Account
from cartera.node import Node
from cartera.portfolio.files.config import CsvFormatConfig
from cartera.portfolio.files.reader import AssignmentReader, read_local
from cartera.portfolio.importer import AssignmentImporter
from tests.conftest import write_sites

NOW = datetime(2026, 3, 2, 13, 30, tzinfo=UTC)
BOGOTA = ZoneInfo("America/Bogota")


def test_the_score_column_is_read(tmp_path: Path) -> None:
    path = tmp_path / "asignacion.csv"
    path.write_text(
        "cuenta;nombre;telefono1;saldo;puntaje_riesgo\nA1;Ana;3001234567;100;712,5\nA2;Beto;3001234568;100;\n"
        "A3;Caro;3001234569;100;alto\nA4;Dani;3001234570;100;-3\n",
        encoding="utf-8",
    )
    reader = AssignmentReader(CsvFormatConfig.model_validate({"creditor": "BCO", "portfolio": "T"}))
    first, second, bad, negative = read_local(reader, path).items
    assert isinstance(first, AssignmentRow)
    assert first.risk_score == 712.5
    assert isinstance(second, AssignmentRow)
    assert second.risk_score is None
    assert bad == RowError(4, "risk_score", "column 'puntaje_riesgo': 'alto' is not a number")
    assert isinstance(negative, AssignmentRow)
    assert negative.risk_score == -3.0


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    store = Database(f"sqlite:///{tmp_path / 'store.db'}")
    store.migrate()
    yield store
    store.dispose()


def test_the_score_is_stored_and_a_row_without_one_keeps_it(db: Database, hooks: Hooks) -> None:
    importer = AssignmentImporter("t", "CO", db, SimulatedClock(NOW, 1.0), hooks)

    def row(score: float | None) -> AssignmentRow:
        return AssignmentRow(1, "BCO", "T", "A1", "Ana", ("3001234567",), Decimal(100), "COP", risk_score=score)

    def stored() -> float | None:
        with db.session() as session:
            return session.scalars(select(Account.risk_score)).one()

    for name, score, expected in (("one", 600.0, 600.0), ("two", None, 600.0), ("three", 15.0, 15.0)):
        rows = (row(score),)
        importer.import_batch(AssignmentBatch(name, hashlib.sha256(name.encode()).hexdigest(), rows), "test")
        assert stored() == expected


def test_the_weight_runs_from_half_to_one_and_a_half_over_the_range() -> None:
    higher = ListingConfig(risk_score="higher_pays", risk_score_range=(300, 850))
    lower = ListingConfig(risk_score="lower_pays", risk_score_range=(300, 850))
    assert [risk_weight(score, higher) for score in (300, 575, 850, 2000, None)] == [0.5, 1.0, 1.5, 1.5, 1.0]
    assert [risk_weight(score, lower) for score in (300, 850, 0)] == [1.5, 0.5, 1.5]
    assert risk_weight(850, ListingConfig()) == 1.0  # ignored by default
    with pytest.raises(ValidationError, match="the lowest score 850 must be below the highest 300"):
        ListingConfig(risk_score_range=(850, 300))


def test_a_likelier_payer_comes_first_when_the_site_says_so() -> None:
    def candidate(n: int, balance: int, score: float | None) -> Candidate:
        return Candidate(n, f"C-{n}", Decimal(balance), "COP", (f"+57300000000{n}",), BOGOTA, risk_score=score)

    candidates = [candidate(1, 1000, 100), candidate(2, 800, 900), candidate(3, 900, None)]
    monday = datetime(2026, 11, 23, 10, tzinfo=BOGOTA)
    assert [pick.ref for pick in rank(candidates, ReachModel(), monday)] == ["C-1", "C-3", "C-2"]
    higher = ListingConfig(risk_score="higher_pays", risk_score_range=(0, 1000))
    picks = rank(candidates, ReachModel(), monday, higher)
    assert [pick.ref for pick in picks] == ["C-2", "C-3", "C-1"]  # 800 x1.40 > 900 x1 > 1000 x0.60
    assert "x1.40 (risk score 900)" in picks[0].why


def test_the_campaign_queue_weighs_the_score_from_the_creditors_file(
    tmp_path: Path, open_node: Callable[..., Node]
) -> None:
    path = write_sites(tmp_path, extra='\n[sites.t.campaign.listing]\nrisk_score = "lower_pays"\n')
    (tmp_path / "inbox" / "asignacion.csv").write_text(
        "cuenta;nombre;telefono1;saldo;puntaje_riesgo\nA-1;Ana Uno;3001110001;900000;950\n"
        "B-1;Beto Dos;3001110002;600000;50\n",
        encoding="utf-8",
    )
    node = open_node(path)
    node.creditor_sync().run_once()
    picks = node.call_list.queue(node.clock.now(), 2, max_attempts_per_day=3)
    assert [pick.ref for pick in picks] == ["B-1", "A-1"]  # 600,000 x1.45 > 900,000 x0.55


@pytest.mark.postgres
def test_the_due_day_and_score_go_through_copy_on_postgresql(postgres_url: str, hooks: Hooks) -> None:
    """PostgreSQL inserts new accounts with COPY and reads them back by the driver: both columns survive it."""
    store = Database(postgres_url)
    store.migrate()
    try:
        importer = AssignmentImporter("t", "CO", store, SimulatedClock(NOW, 1.0), hooks)
        rows = (
            AssignmentRow(1, "BCO", "T", "A1", "Ana", ("3001234567",), Decimal(100), "COP", days_past_due=10),
            AssignmentRow(2, "BCO", "T", "A2", "Beto", ("3001234568",), Decimal(100), "COP", risk_score=42.5),
        )
        importer.import_batch(AssignmentBatch("one", hashlib.sha256(b"one").hexdigest(), rows), "test")
        again = (AssignmentRow(1, "BCO", "T", "A1", "Ana", ("3001234567",), Decimal(100), "COP", risk_score=7.0),)
        importer.import_batch(AssignmentBatch("two", hashlib.sha256(b"two").hexdigest(), again), "test")
        with store.session() as session:
            found = session.execute(select(Account.ref, Account.due_on, Account.risk_score).order_by(Account.ref))
            assert [tuple(row) for row in found] == [("A1", date(2026, 2, 20), 7.0), ("A2", None, 42.5)]
    finally:
        store.dispose()
