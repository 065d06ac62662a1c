"""accounts.due_on: the day the debt fell due, from the creditor's due date or days past due column

The screen pop shows the days past due and the call list segments accounts by them (tramos de mora).

Revision ID: 0014_account_due_date
Revises: 0013_site_leases
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_account_due_date"
down_revision = "0013_site_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("due_on", sa.Date(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("due_on")
