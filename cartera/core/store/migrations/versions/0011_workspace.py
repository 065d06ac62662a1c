"""agents' workspace: agents' dialer identities, dispositions, promises, callbacks, stopped accounts

``contact_attempts.right_party`` is filled from the dispositions the simulator stored before: the right-party
codes true, ``wrong_party`` false, others unknown (an answered call then stays a conversation, as it was).

Revision ID: 0011_workspace
Revises: 0010_raw_cause_text
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cartera.core.store.schema

revision = "0011_workspace"
down_revision = "0010_raw_cause_text"
branch_labels = None
depends_on = None

UTC_DATETIME = cartera.core.store.schema.UTCDateTime
MONEY = cartera.core.store.schema.Money


def upgrade() -> None:
    op.create_table(
        "dispositions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("attempt_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=True),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("flags", sa.JSON(), nullable=False),
        sa.Column("agent", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("at", UTC_DATETIME(), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_dispositions_account_id_accounts")),
        sa.ForeignKeyConstraint(
            ["attempt_id"], ["contact_attempts.id"], name=op.f("fk_dispositions_attempt_id_contact_attempts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispositions")),
        sa.UniqueConstraint("attempt_id", name=op.f("uq_dispositions_attempt_id")),
    )
    for column in ("account_id", "agent", "at", "site"):
        op.create_index(op.f(f"ix_dispositions_{column}"), "dispositions", [column], unique=False)
    op.create_table(
        "promises",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("disposition_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("total", MONEY(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("agent", sa.String(length=64), nullable=False),
        sa.Column("made_at", UTC_DATETIME(), nullable=False),
        sa.Column("settled_at", UTC_DATETIME(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_promises_account_id_accounts")),
        sa.ForeignKeyConstraint(
            ["disposition_id"], ["dispositions.id"], name=op.f("fk_promises_disposition_id_dispositions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promises")),
    )
    for column in ("account_id", "site", "state"):
        op.create_index(op.f(f"ix_promises_{column}"), "promises", [column], unique=False)
    op.create_table(
        "promise_instalments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("promise_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("amount", MONEY(), nullable=False),
        sa.Column("due", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(
            ["promise_id"], ["promises.id"], name=op.f("fk_promise_instalments_promise_id_promises"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_promise_instalments")),
    )
    op.create_index(op.f("ix_promise_instalments_promise_id"), "promise_instalments", ["promise_id"], unique=False)
    op.create_table(
        "callbacks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("disposition_id", sa.Integer(), nullable=False),
        sa.Column("phone", sa.String(length=20), nullable=False),
        sa.Column("at", UTC_DATETIME(), nullable=False),
        sa.Column("agent", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_callbacks_account_id_accounts")),
        sa.ForeignKeyConstraint(
            ["disposition_id"], ["dispositions.id"], name=op.f("fk_callbacks_disposition_id_dispositions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callbacks")),
    )
    for column in ("account_id", "at", "site", "state"):
        op.create_index(op.f(f"ix_callbacks_{column}"), "callbacks", [column], unique=False)
    op.create_table(
        "account_stops",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("agent", sa.String(length=64), nullable=False),
        sa.Column("attempt_id", sa.Integer(), nullable=True),
        sa.Column("at", UTC_DATETIME(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_account_stops_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["attempt_id"], ["contact_attempts.id"], name=op.f("fk_account_stops_attempt_id_contact_attempts")
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_account_stops")),
    )
    op.add_column("contact_attempts", sa.Column("connected_at", UTC_DATETIME(), nullable=True))
    op.add_column("contact_attempts", sa.Column("right_party", sa.Boolean(), nullable=True))
    attempts = sa.table(
        "contact_attempts", sa.column("disposition", sa.String()), sa.column("right_party", sa.Boolean())
    )
    reached = ("right_party_contact", "promise_to_pay", "refused_to_pay")
    op.execute(attempts.update().where(attempts.c.disposition.in_(reached)).values(right_party=True))
    op.execute(attempts.update().where(attempts.c.disposition == "wrong_party").values(right_party=False))
    op.add_column("web_users", sa.Column("extension", sa.String(length=64), nullable=True))
    op.create_index(op.f("ix_web_users_extension"), "web_users", ["extension"], unique=True)


def downgrade() -> None:
    op.drop_index(op.f("ix_web_users_extension"), table_name="web_users")
    with op.batch_alter_table("web_users") as batch:
        batch.drop_column("extension")
    with op.batch_alter_table("contact_attempts") as batch:
        batch.drop_column("right_party")
        batch.drop_column("connected_at")
    op.drop_table("account_stops")
    op.drop_table("callbacks")
    op.drop_table("promise_instalments")
    op.drop_table("promises")
    op.drop_table("dispositions")
