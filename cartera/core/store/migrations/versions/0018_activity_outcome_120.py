"""activities.outcome holds a payment's whole reference: 120 characters (PAYMENT_REF_MAX), not 32

A payment activity's outcome is the creditor's payment reference, which the creditor API documents up to 120
characters; PostgreSQL refused one over 32 and the whole delivery failed on every run. A longer reference is
quarantined by the row rules, on every channel.

Revision ID: 0018_activity_outcome_120
Revises: 0017_extension_per_site
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018_activity_outcome_120"
down_revision = "0017_extension_per_site"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.alter_column("outcome", existing_type=sa.String(length=32), type_=sa.String(length=120))


def downgrade() -> None:
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.alter_column("outcome", existing_type=sa.String(length=120), type_=sa.String(length=32))
