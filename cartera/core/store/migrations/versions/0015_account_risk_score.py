"""accounts.risk_score: the creditor's risk score of the account, from its files' risk score column

The call list weighs an account's expected value by it when the site says how ([campaign.listing] risk_score).

Revision ID: 0015_account_risk_score
Revises: 0014_account_due_date
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015_account_risk_score"
down_revision = "0014_account_due_date"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("risk_score", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("risk_score")
