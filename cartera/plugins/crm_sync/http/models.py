"""The creditor API's JSON documents (they make its OpenAPI schema) and their mapping to core's types."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SkipValidation,
    ValidationError,
    field_validator,
    model_validator,
)

from cartera.plugin import (
    AMOUNT_DECIMAL_PLACES,
    AMOUNT_MAX_DIGITS,
    PAYMENT_REF_MAX,
    Activity,
    AssignmentAction,
    AssignmentRow,
    RowError,
)
from cartera.plugins.crm_sync.http.config import CODE

MAX_ROWS = 10_000
_ROW_EXAMPLE: dict[str, JsonValue] = {
    "account_ref": "BCO-000101",
    "debtor_name": "Luis Fernando Gómez Rojas",
    "phones": ["300 123 4567", "+57 601 5550123"],
    "balance": "1250000.50",
    "currency": "COP",
}


class AssignmentIn(BaseModel):
    """One account as the creditor assigns it. A row breaking these rules is quarantined, not the batch."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_ROW_EXAMPLE]})

    account_ref: str = Field(min_length=1, max_length=64, description="The creditor's account reference.")
    action: Literal["assign", "update", "withdraw", "payment"] = Field(
        "assign",
        description="assign: a new account or an update; update: an update only (an unknown account is "
        "rejected); withdraw: stop contact at once; payment: the debtor paid payment_amount.",
    )
    debtor_name: str = Field("", max_length=200, description="The debtor's full name (needed to assign).")
    phones: list[str] = Field(
        [], max_length=10, description="Phone numbers as the creditor has them; core normalises them to E.164."
    )
    balance: Decimal = Field(
        Decimal(0),
        ge=0,
        max_digits=AMOUNT_MAX_DIGITS,
        decimal_places=AMOUNT_DECIMAL_PLACES,
        allow_inf_nan=False,
        description="Balance owed, at most 2 decimals; send it as a string to keep every digit.",
    )
    currency: str | None = Field(
        None, pattern=r"^[A-Z]{3}$", description="ISO 4217 code; unset: the site's configured currency."
    )
    payment_amount: Decimal | None = Field(
        None,
        gt=0,
        max_digits=AMOUNT_MAX_DIGITS,
        decimal_places=AMOUNT_DECIMAL_PLACES,
        allow_inf_nan=False,
        description="Amount paid, at most 2 decimals; required with action payment, only then.",
    )
    paid_on: date | None = Field(
        None,
        description="Payment rows: the day the debtor paid; a day after the day of import (the site's) quarantines "
        "the row (field paid_on).",
    )
    payment_ref: str | None = Field(
        None,
        min_length=1,
        max_length=PAYMENT_REF_MAX,
        description="Payment rows: your reference of the payment; a payment whose reference (or day and "
        "amount) was loaded before is not applied twice.",
    )
    country: str | None = Field(
        None,
        pattern=r"^[A-Z]{2}$",
        description="ISO 3166 country of this row's phones, how their national numbers read; unset: the "
        "portfolio's. A portfolio's country and law pack are set by the site, never by a row. A country the "
        "node does not know quarantines the row (field country).",
    )
    # 8 and 64: what the store keeps and the importer accepts (cartera.portfolio.row_rules REGION_MAX, TIMEZONE_MAX)
    region: str | None = Field(
        None, max_length=8, description="ISO 3166-2 subdivision of the debtor's address (CO-DC)."
    )
    timezone: str | None = Field(None, max_length=64, description="IANA zone of the debtor's address (America/Bogota).")

    @model_validator(mode="after")
    def _payment_amount_with_payments(self) -> AssignmentIn:
        if (self.action == "payment") != (self.payment_amount is not None):
            raise ValueError("payment_amount is required with action payment and only then")
        return self


class BatchIn(BaseModel):
    """A delivery of assignment rows. Re-sending a batch id returns the first result and changes nothing."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"batch_id": "2026-03-02-1", "creditor": "BCO", "portfolio": "TARJETAS", "rows": [_ROW_EXAMPLE]}
            ]
        },
    )

    batch_id: str = Field(pattern=CODE, description="The creditor's unique id of this batch (idempotency key).")
    creditor: str = Field(pattern=CODE, description="The creditor code; must be the token's creditor.")
    portfolio: str = Field(pattern=CODE, description="The portfolio the rows belong to.")
    rows: list[SkipValidation[AssignmentIn]] = Field(
        min_length=1,
        max_length=MAX_ROWS,
        description=f"1 to {MAX_ROWS} rows. Each must be an object; a row that is not a valid assignment is "
        "rejected with its index, field and reason while the other rows load.",
    )

    @field_validator("rows")
    @classmethod
    def _objects(cls, rows: list[Any]) -> list[Any]:
        for index, row in enumerate(rows):
            if not isinstance(row, dict | AssignmentIn):
                raise ValueError(f"rows[{index}] must be an object, not {type(row).__name__}")
        return rows


class RejectedRow(BaseModel):
    """A row of the batch that was not loaded."""

    index: int = Field(
        description="Position of the row in the batch's rows (0-based); -1: the batch as a whole (status rejected)."
    )
    field: str = Field(description="The field at fault (dotted path).")
    reason: str = Field(description="Why the row was rejected.")


class BatchOut(BaseModel):
    """What became of a batch: its rows, the rejection report, and whether the node imported it yet."""

    batch_id: str
    creditor: str
    portfolio: str
    status: Literal["pending", "imported", "rejected"] = Field(
        description="pending: stored, waiting for the node's next sync; imported: loaded into the node's store; "
        "rejected: the node could not read the stored batch as a whole and loaded none of it (the reason is in "
        "rejected, index -1): push the rows again under a new batch_id."
    )
    rows: int = Field(description="Rows received.")
    rejected: list[RejectedRow] = Field(
        description="Rows quarantined instead of loaded (the rejection report): while pending, the rows that are "
        "not valid assignments; once imported, also those the node refused (a phone that is not a valid "
        "number, a withdrawal or update of an account it does not have...)."
    )


class ActivityOut(BaseModel):
    """Work done on an account: a call attempt, an SMS, a promise to pay or a payment."""

    seq: int = Field(description="Increases with every activity of the site; the export cursor.")
    kind: Literal["call_attempt", "sms", "promise_to_pay", "payment"]
    at: datetime
    creditor: str
    portfolio: str
    account_ref: str
    phone: str | None = Field(None, description="E.164 number contacted.")
    outcome: str | None = Field(
        None,
        description="Call outcome, agent disposition or SMS state; of a payment, its payment_ref (at most "
        f"{PAYMENT_REF_MAX} characters).",
    )
    amount: Decimal | None = Field(None, description="Promised or paid amount (a decimal string).")
    due_date: date | None = Field(None, description="When the debtor promised to pay.")
    agent: str | None = None
    attempt: int | None = Field(
        None,
        description="The node's id of the call (call_attempt, promise_to_pay). A later call_attempt of the same "
        "call corrects the earlier one's outcome (the agent's disposition after the node recorded "
        "wrap_up_timeout or browser_closed): count one attempt per call.",
    )

    @classmethod
    def of(cls, activity: Activity) -> ActivityOut:
        return cls(
            seq=activity.seq,
            kind=activity.kind.value,
            at=activity.at,
            creditor=activity.creditor,
            portfolio=activity.portfolio,
            account_ref=activity.account_ref,
            phone=activity.phone,
            outcome=activity.outcome,
            amount=activity.amount,
            due_date=activity.due_date,
            agent=activity.agent,
            attempt=activity.attempt,
        )


class ActivityPage(BaseModel):
    """Activities after the cursor, in seq order. Ask again with ``after=next_after`` to acknowledge them."""

    activities: list[ActivityOut]
    next_after: int = Field(description="The cursor for the next request: the last seq of this page.")
    more: bool = Field(description="Whether more activities wait after this page.")


class ErrorOut(BaseModel):
    """An error the client must act on."""

    detail: str


class HealthOut(BaseModel):
    status: Literal["ok"]
    api: str


def rows_of(batch: BatchIn, currency: str) -> Iterator[AssignmentRow | RowError]:
    """The batch's rows for core, line = position + 1; an invalid row becomes a :class:`RowError`."""
    for line, raw in enumerate(batch.rows, 1):
        try:
            row = AssignmentIn.model_validate(raw)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            field = ".".join(str(part) for part in error["loc"]) or "row"
            yield RowError(line, field, error["msg"])
            continue
        yield AssignmentRow(
            line=line,
            creditor=batch.creditor,
            portfolio=batch.portfolio,
            account_ref=row.account_ref,
            debtor_name=row.debtor_name,
            phones=tuple(row.phones),
            balance=row.balance,
            currency=row.currency or currency,
            action=AssignmentAction(row.action),
            country=row.country,
            payment_amount=row.payment_amount,
            paid_on=row.paid_on,
            payment_ref=row.payment_ref,
            region=row.region,
            timezone=row.timezone,
        )
