"""Conformance suite for creditor-data exchange (crm_sync) adapters.

Subclass :class:`CrmSyncConformance` in your plugin's tests and override the fixtures ``context``, ``crm``,
``good_delivery``, ``bad_header_file``, ``rejected_delivery`` and ``exported_seqs``; every test then checks one
promise of :class:`cartera.core.adapters.CrmSync` against your adapter.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from cartera.core.adapters import CrmSync
from cartera.core.errors import Unsupported
from cartera.core.models import (
    Activity,
    ActivityKind,
    AssignmentBatch,
    AssignmentRow,
    CheckResult,
    FileRejected,
    RowError,
)
from cartera.core.testing.capabilities import assert_serves_http_as_declared
from cartera.core.testing.context import CapturingContext


@dataclass(frozen=True)
class Delivery:
    """An assignment file waiting where ``fetch()`` finds it, and what the parser must make of it.

    The file is the only delivery waiting. It holds the good rows ``account_refs`` (in file order), all of
    creditor ``creditor`` and portfolio ``portfolio``, and exactly one row the parser must reject, on line
    ``rejected_line``.
    """

    path: Path
    account_refs: tuple[str, ...]
    rejected_line: int
    creditor: str
    portfolio: str


@dataclass(frozen=True)
class RejectedDelivery:
    """A delivery waiting where ``fetch()`` finds it, the only one, that the parser rejects whole
    (:class:`FileRejected`); ``set_aside`` returns the content of each delivery the adapter has set aside so far
    (where operators and the creditor find rejected deliveries: a ``rejected/`` folder...)."""

    set_aside: Callable[[], list[bytes]]


def _need(fixture: str, what: str) -> NotImplementedError:
    return NotImplementedError(f"a CrmSyncConformance subclass must override the fixture {fixture!r}: {what}")


def _split(batch: AssignmentBatch) -> tuple[list[AssignmentRow], list[RowError]]:
    items = list(batch.items)
    rows = [item for item in items if isinstance(item, AssignmentRow)]
    errors = [item for item in items if isinstance(item, RowError)]
    assert len(rows) + len(errors) == len(items), f"items must be AssignmentRow or RowError: {items!r}"
    return rows, errors


def _activities() -> list[Activity]:
    at = datetime(2026, 3, 2, 14, 5, 30, tzinfo=UTC)
    return [
        Activity(
            seq=41,
            kind=ActivityKind.CALL_ATTEMPT,
            at=at,
            creditor="BCO",
            portfolio="TARJETAS",
            account_ref="BCO-000101",
            phone="+573001234567",
            outcome="no_answer",
        ),
        Activity(
            seq=42,
            kind=ActivityKind.PROMISE_TO_PAY,
            at=at,
            creditor="BCO",
            portfolio="TARJETAS",
            account_ref="BCO-000102",
            phone="+573101234567",
            outcome="promise_to_pay",
            amount=Decimal("350000.50"),
            due_date=date(2026, 3, 16),
            agent="agente-07",
        ),
        Activity(
            seq=43,
            kind=ActivityKind.SMS,
            at=at,
            creditor="BCO",
            portfolio="TARJETAS",
            account_ref="BCO-000103",
            phone="+525555123456",
            outcome="delivered",
        ),
    ]


class CrmSyncConformance:
    """The contract of :class:`cartera.core.adapters.CrmSync`; not collected by pytest until subclassed as ``Test*``."""

    @pytest.fixture
    def context(self) -> CapturingContext:
        raise _need("context", "a CapturingContext for the adapter")

    @pytest.fixture
    def crm(self) -> CrmSync[Any]:
        raise _need("crm", "the adapter built with the `context` fixture, started, and stopped at teardown")

    @pytest.fixture
    def good_delivery(self) -> Delivery:
        raise _need("good_delivery", "a Delivery: an assignment file waiting where fetch() finds it")

    @pytest.fixture
    def bad_header_file(self) -> Path:
        raise _need("bad_header_file", "an assignment file whose header is wrong")

    @pytest.fixture
    def rejected_delivery(self) -> RejectedDelivery:
        raise _need(
            "rejected_delivery", "a RejectedDelivery: a delivery waiting where fetch() finds it, rejected whole"
        )

    @pytest.fixture
    def exported_seqs(self) -> Callable[[], list[int]]:
        raise _need("exported_seqs", "a callable listing the seqs the creditor received so far, in order")

    def test_good_rows_come_through(self, crm: CrmSync[Any], good_delivery: Delivery) -> None:
        """read_file yields every good row, in file order, with its creditor and portfolio."""
        rows, _ = _split(crm.read_file(good_delivery.path))
        assert len(good_delivery.account_refs) >= 3, "the fixture must hold at least 3 good rows"
        assert tuple(row.account_ref for row in rows) == good_delivery.account_refs
        assert {(row.creditor, row.portfolio) for row in rows} == {(good_delivery.creditor, good_delivery.portfolio)}

    def test_delivers_as_declared(self, crm: CrmSync[Any], good_delivery: Delivery) -> None:
        """delivers() of an adapter declaring restricts_deliveries admits the good delivery's creditor and portfolio,
        and no creditor the configuration does not name; any other adapter's is None (no restriction)."""
        scope = crm.delivers()
        if not type(crm).capabilities.restricts_deliveries:
            assert scope is None, "delivers() restricts but restricts_deliveries is not declared"
            return
        assert scope is not None, "declares restricts_deliveries but delivers() is None"
        assert scope.refusal(good_delivery.creditor, good_delivery.portfolio) is None
        refused = scope.refusal(f"{good_delivery.creditor}-NOT-CONFIGURED", good_delivery.portfolio)
        assert refused is not None
        assert refused[0] == "creditor"

    def test_rows_are_typed(self, crm: CrmSync[Any], good_delivery: Delivery) -> None:
        """Rows carry increasing line numbers, raw phone strings, Decimal balances and a currency."""
        rows, _ = _split(crm.read_file(good_delivery.path))
        lines = [row.line for row in rows]
        assert lines == sorted(set(lines))
        assert lines[0] >= 1
        for row in rows:
            assert row.phones
            assert all(isinstance(phone, str) and phone.strip() for phone in row.phones)
            assert isinstance(row.balance, Decimal)
            assert row.balance >= 0
            assert row.currency
            assert row.debtor_name

    def test_bad_row_is_a_row_error(self, crm: CrmSync[Any], good_delivery: Delivery) -> None:
        """The one bad row becomes a RowError (line, field, reason) while the good rows still load."""
        rows, errors = _split(crm.read_file(good_delivery.path))
        assert len(errors) == 1, errors
        (error,) = errors
        assert error.line == good_delivery.rejected_line
        assert error.line not in {row.line for row in rows}
        assert error.field
        assert error.reason
        assert len(rows) == len(good_delivery.account_refs)

    def test_content_sha256_is_the_files(self, crm: CrmSync[Any], good_delivery: Delivery) -> None:
        """content_sha256 is the sha256 of the file's bytes, the same on every read."""
        expected = hashlib.sha256(good_delivery.path.read_bytes()).hexdigest()
        first, second = crm.read_file(good_delivery.path), crm.read_file(good_delivery.path)
        assert first.content_sha256 == second.content_sha256 == expected

    def test_wrong_header_is_rejected_before_any_row(self, crm: CrmSync[Any], bad_header_file: Path) -> None:
        """A wrong header raises FileRejected, naming the file, before any row is yielded."""
        yielded: list[AssignmentRow | RowError] = []
        with pytest.raises(FileRejected) as rejected:
            yielded.extend(crm.read_file(bad_header_file).items)
        assert yielded == []
        assert bad_header_file.name in str(rejected.value)

    def test_fetch_yields_the_delivery(self, crm: CrmSync[Any], good_delivery: Delivery) -> None:
        """fetch yields the waiting delivery, with the same content hash and rows as read_file."""
        batches = list(crm.fetch())
        assert len(batches) == 1, [batch.source for batch in batches]
        (batch,) = batches
        assert batch.content_sha256 == crm.read_file(good_delivery.path).content_sha256
        rows, errors = _split(batch)
        assert tuple(row.account_ref for row in rows) == good_delivery.account_refs
        assert [error.line for error in errors] == [good_delivery.rejected_line]

    def test_acknowledged_delivery_is_not_fetched_again(self, crm: CrmSync[Any], good_delivery: Delivery) -> None:
        """After acknowledge(batch), fetch yields nothing more."""
        (batch,) = list(crm.fetch())
        _split(batch)
        crm.acknowledge(batch)
        assert list(crm.fetch()) == []

    def test_rejection_reports_as_declared(self, crm: CrmSync[Any], good_delivery: Delivery) -> None:
        """An adapter declaring rejection_reports takes the report of a fetched delivery's bad rows, twice alike
        (after a crash), before acknowledge; any other adapter refuses with Unsupported."""
        (batch,) = list(crm.fetch())
        _, errors = _split(batch)
        if not type(crm).capabilities.rejection_reports:
            with pytest.raises(Unsupported):
                crm.report_rejections(batch, errors)
            return
        crm.report_rejections(batch, errors)
        crm.report_rejections(batch, errors)
        crm.acknowledge(batch)
        assert list(crm.fetch()) == []

    def test_serves_http_as_declared(self, crm: CrmSync[Any]) -> None:
        """http_router() gives routes exactly when the adapter declares serves_http."""
        assert_serves_http_as_declared(crm)

    def test_rejected_delivery_is_set_aside_not_lost(
        self, crm: CrmSync[Any], rejected_delivery: RejectedDelivery
    ) -> None:
        """After reject(batch) of a delivery rejected whole, fetch yields nothing more; the delivery is kept,
        once, with its content, also when reject is called again (after a crash)."""
        (batch,) = list(crm.fetch())
        with pytest.raises(FileRejected):
            list(batch.items)
        assert rejected_delivery.set_aside() == []
        crm.reject(batch)
        assert list(crm.fetch()) == []
        crm.reject(batch)
        kept = rejected_delivery.set_aside()
        assert [hashlib.sha256(content).hexdigest() for content in kept] == [batch.content_sha256]

    def test_export_delivers_activities_in_order(
        self, crm: CrmSync[Any], exported_seqs: Callable[[], list[int]]
    ) -> None:
        """export delivers calls, SMS and promises to pay (amount and due date) in order."""
        activities = _activities()
        assert exported_seqs() == []
        crm.export(activities)
        assert exported_seqs() == [activity.seq for activity in activities]

    def test_export_of_nothing_is_a_no_op(self, crm: CrmSync[Any], exported_seqs: Callable[[], list[int]]) -> None:
        """export([]) delivers nothing and leaves earlier exports as they were."""
        crm.export([])
        assert exported_seqs() == []
        crm.export(_activities()[:1])
        crm.export([])
        assert exported_seqs() == [41]

    def test_check_is_ok(self, crm: CrmSync[Any]) -> None:
        """check reports ok with a detail line for operators."""
        result = crm.check()
        assert isinstance(result, CheckResult)
        assert result.ok, result.detail
        assert result.detail.strip()

    def test_config_model_rejects_unknown_key(self, crm: CrmSync[Any]) -> None:
        """The adapter's config_model rejects a key it does not know."""
        settings = crm.config.model_dump()
        type(crm).config_model.model_validate(settings)
        with pytest.raises(ValidationError, match="no_such_setting"):
            type(crm).config_model.model_validate({**settings, "no_such_setting": 1})
