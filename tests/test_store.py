"""The store: migrations match the models, audit log is append-only, money and time round-trip exactly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from cartera.core.audit import audit
from cartera.core.store.database import Database
from cartera.core.store.schema import Account, AuditEntry, Base, Creditor, Debtor, Portfolio


def migrated(url: str) -> Database:
    db = Database(url)
    db.migrate()
    db.migrate()  # idempotent
    return db


def assert_schema_matches_models(db: Database) -> None:
    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], f"models changed without an Alembic revision: {diff}"


def assert_audit_is_append_only(db: Database) -> None:
    with db.session() as session:
        audit(session, at=datetime.now(UTC), site="t", actor="os:test", action="x", subject="y", n=1)
    for statement in ("UPDATE audit_log SET actor = 'mallory'", "DELETE FROM audit_log"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"), db.engine.begin() as conn:
            conn.execute(sa.text(statement))
    with db.session() as session:
        entries = session.scalars(sa.select(AuditEntry)).all()
        assert [(e.actor, e.details) for e in entries] == [("os:test", {"n": 1})]


def assert_money_and_time_round_trip(db: Database) -> None:
    bogota_morning = datetime(2026, 11, 23, 8, 0, tzinfo=timezone(timedelta(hours=-5)))
    with db.session() as session:
        creditor = Creditor(code="C")
        account = Account(
            portfolio=Portfolio(creditor=creditor, code="P", site="t", country="CO"),
            ref="A-1",
            debtor=Debtor(name="Ana"),
            balance=Decimal("1250000.10"),
            currency="COP",
            status="active",
            updated_at=bogota_morning,
        )
        session.add(account)
    with db.session() as session:
        loaded = session.scalars(sa.select(Account)).one()
        assert loaded.balance == Decimal("1250000.10")
        assert loaded.updated_at == bogota_morning
        assert loaded.updated_at.tzinfo is UTC


def test_sqlite_store(tmp_path: Path) -> None:
    db = migrated(f"sqlite:///{tmp_path / 'nested' / 'site.db'}")
    try:
        assert_schema_matches_models(db)
        assert_audit_is_append_only(db)
        assert_money_and_time_round_trip(db)
    finally:
        db.dispose()


@pytest.mark.postgres
def test_postgresql_store(postgres_url: str) -> None:
    db = migrated(postgres_url)
    try:
        assert_schema_matches_models(db)
        assert_audit_is_append_only(db)
        assert_money_and_time_round_trip(db)
    finally:
        db.dispose()


def test_unreachable_store_is_one_clear_error() -> None:
    from cartera.core.errors import CarteraError

    db = Database("postgresql+psycopg://nobody@127.0.0.1:1/none")
    with pytest.raises(CarteraError, match=r"cannot open the store postgresql\+psycopg://nobody@127.0.0.1:1/none"):
        db.migrate()


def test_a_migration_that_fails_midway_leaves_no_half_made_schema(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from alembic.operations import Operations

    url = f"sqlite:///{tmp_path / 'site.db'}"
    real_execute = Operations.execute

    def crash_at_the_triggers(self: Operations, sql: object, *args: object, **kwargs: object) -> None:
        if "TRIGGER" in str(sql):
            raise RuntimeError("killed while migrating")
        real_execute(self, sql, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Operations, "execute", crash_at_the_triggers)
    db = Database(url)
    with pytest.raises(RuntimeError, match="killed while migrating"):
        db.migrate()
    with db.engine.connect() as conn:
        assert sa.inspect(conn).get_table_names() == []
    db.dispose()
    monkeypatch.undo()
    assert_schema_matches_models(migrated(url))


def test_a_store_holding_a_worked_portfolio_upgrades_from_0007(tmp_path: Path) -> None:
    """0008 rebuilds ``portfolios`` on SQLite while accounts refer to it: the upgrade of a site's store that
    already holds data must neither fail nor leave a row referring to nothing (it failed with "FOREIGN KEY
    constraint failed" before migrations turned SQLite's foreign keys off while they run)."""
    url = f"sqlite:///{tmp_path / 'site.db'}"
    db = Database(url)
    db.migrate("0007_contact_prefs")
    with db.engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO creditors (id, code) VALUES (1, 'BANCO')")
        conn.exec_driver_sql(
            "INSERT INTO portfolios (id, creditor_id, code, site, country) VALUES (1, 1, 'P', 't', 'CO')"
        )
        conn.exec_driver_sql("INSERT INTO debtors (id, name) VALUES (1, 'Ana')")
        conn.exec_driver_sql(
            "INSERT INTO accounts (id, portfolio_id, ref, debtor_id, balance, currency, status, updated_at)"
            " VALUES (1, 1, 'R-1', 1, 1000, 'COP', 'active', '2026-11-23 09:00:00')"
        )
    db.migrate()
    with db.session() as session:
        account = session.scalars(sa.select(Account)).one()
        assert (account.ref, account.portfolio.code, account.portfolio.creditor.code) == ("R-1", "P", "BANCO")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA foreign_key_check").all() == []
    assert_schema_matches_models(db)
    db.dispose()


def test_texts_answered_before_0019_are_not_taken_for_killed_senders_texts(tmp_path: Path) -> None:
    """Since 0019 a text with no detail is one its sender never answered (the node settles it as a killed sender's).
    Before, a sender stored its gateway's detail as it came, often none: the upgrade marks every text its sender
    answered (no longer queued, or holding a gateway id) as answered, so the first reconcile after it does not
    settle the site's whole history again (an SMS activity more for each, exported to the creditor)."""
    url = f"sqlite:///{tmp_path / 'site.db'}"
    db = Database(url)
    db.migrate("0018_activity_outcome_120")
    rows = [  # (id, state, gateway_id, detail)
        (1, "submitted", "GW-1", None),
        (2, "delivered", "GW-2", None),
        (3, "failed", None, None),
        (4, "failed", None, "smsbox refused"),
        (5, "queued", None, None),  # a killed sender's, before 0019
        (6, "queued", "GW-6", None),  # answered, receipt pending
    ]
    with db.engine.begin() as conn:
        for id_, state, gateway_id, detail in rows:
            conn.execute(
                sa.text(
                    "INSERT INTO sms_messages (id, site, phone, text, state, gateway_id, detail, created_at,"
                    " updated_at) VALUES (:id, 't', '+573001234567', 'hola', :state, :gateway_id, :detail,"
                    " '2026-11-23 09:00:00', '2026-11-23 09:00:00')"
                ),
                {"id": id_, "state": state, "gateway_id": gateway_id, "detail": detail},
            )
    db.migrate()
    with db.engine.connect() as conn:
        rows_after = conn.execute(sa.text("SELECT id, detail FROM sms_messages ORDER BY id")).all()
    details: dict[int, str | None] = {row.id: row.detail for row in rows_after}
    assert details == {1: "", 2: "", 3: "", 4: "smsbox refused", 5: None, 6: ""}
    assert_schema_matches_models(db)
    db.dispose()
