"""Red-team round 19 G2: the importer's (region, time zone) answers are kept in a bounded cache.

A creditor pushed batches of unique, invalid, 700-character ``timezone`` values: every one stayed in the
node-lifetime importer's cache (twice: the key, and the quarantine reason repeating it), 40,000 entries and
+250 MB after four pushes, never freed. The cache now holds at most :data:`PLACES_LIMIT` answers, a value longer
than the store keeps (region 8, time zone 64) is refused without being checked nor kept, and the API refuses it
with its field.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError

from cartera.core.models import AssignmentRow, RowError
from cartera.plugins.crm_sync.http.models import AssignmentIn
from cartera.portfolio import row_rules
from cartera.portfolio.row_rules import REGION_MAX, TIMEZONE_MAX, RowChecks

pytestmark = pytest.mark.abuse

COUNTRIES = ("CO",)


def _row(line: int, *, region: str | None = None, timezone: str | None = None) -> AssignmentRow:
    return AssignmentRow(
        line, "BANCO", "TARJETAS", f"R-{line}", "Ana", ("3001234567",), Decimal("100"), "COP",
        region=region, timezone=timezone,
    )  # fmt: skip


def test_unique_invalid_zones_do_not_grow_the_cache_past_its_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(row_rules, "PLACES_LIMIT", 50)
    checks = RowChecks(None)
    for line in range(1, 501):
        found = checks.place(_row(line, timezone=f"Zone/{line}-x"), COUNTRIES)
        assert isinstance(found, RowError)
        assert found.field == "timezone"
        assert len(checks._places) <= 50
    for line in range(1, 501):
        found = checks.place(_row(line, region=f"QQ-{line}"), COUNTRIES)
        assert isinstance(found, RowError)
        assert found.field == "region"
        assert len(checks._places) <= 50
    # valid answers are still cached and right after the clearing
    assert checks.place(_row(1, region="CO-DC", timezone="America/Bogota"), COUNTRIES) == ("CO-DC", "America/Bogota")


def test_an_over_long_value_is_refused_with_its_field_and_not_kept() -> None:
    checks = RowChecks(None)
    for field, value, kwargs in (
        ("timezone", "America/" + "x" * 700, {"timezone": "America/" + "x" * 700}),
        ("region", "CO-" + "D" * 700, {"region": "CO-" + "D" * 700}),
    ):
        found = checks.place(_row(7, **kwargs), COUNTRIES)
        assert isinstance(found, RowError), found
        assert found.field == field, found
        assert value not in found.reason, found.reason
        assert len(found.reason) < 200, found.reason
    assert checks._places == {}
    # at the bound itself the value is checked as before
    assert checks.place(_row(1, timezone="America/Bogota".ljust(TIMEZONE_MAX)), COUNTRIES) == (None, "America/Bogota")


@pytest.mark.parametrize(("field", "limit"), [("timezone", TIMEZONE_MAX), ("region", REGION_MAX)])
def test_the_api_refuses_an_over_long_value_with_its_field(field: str, limit: int) -> None:
    row = {"account_ref": "R-1", "debtor_name": "Ana", "phones": ["3001234567"], "balance": "100"}
    AssignmentIn.model_validate({**row, field: "x" * limit})
    with pytest.raises(ValidationError) as raised:
        AssignmentIn.model_validate({**row, field: "x" * (limit + 1)})
    assert [error["loc"] for error in raised.value.errors()] == [(field,)]
