"""activities.attempt_id: the call a call_attempt (or promise_to_pay) activity is about

An agent's late disposition replacing a system code changes the call's activity in place while the export has
not sent it, and the creditor recognises a further one of the same call as a correction. Rows from before this
revision carry none.

Revision ID: 0016_activity_attempt
Revises: 0015_account_risk_score
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016_activity_attempt"
down_revision = "0015_account_risk_score"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.add_column(sa.Column("attempt_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_activities_attempt_id_contact_attempts"), "contact_attempts", ["attempt_id"], ["id"]
        )
        batch_op.create_index(batch_op.f("ix_activities_attempt_id"), ["attempt_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_activities_attempt_id"))
        batch_op.drop_constraint(batch_op.f("fk_activities_attempt_id_contact_attempts"), type_="foreignkey")
        batch_op.drop_column("attempt_id")
