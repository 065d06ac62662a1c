"""accounts.debtor_id indexed: every decision finds the accounts of the debtor behind a number

The compliance history counts the contacts of every account whose debtor has one of the numbers
(:mod:`cartera.contact.compliance.debtor`); without the index each decision scanned the accounts.

Revision ID: 0012_debtor_accounts
Revises: 0011_workspace
"""

from __future__ import annotations

from alembic import op

revision = "0012_debtor_accounts"
down_revision = "0011_workspace"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(op.f("ix_accounts_debtor_id"), "accounts", ["debtor_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_accounts_debtor_id"), table_name="accounts")
