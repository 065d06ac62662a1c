"""creditor exchange: assignment files, mappings, export sequences

Revision ID: 0005_crm
Revises: 0004_sms
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cartera.core.store.schema

revision = "0005_crm"
down_revision = "0004_sms"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "reported_payments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=128), nullable=True),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("amount", cartera.core.store.schema.Money(), nullable=False),
        sa.Column("paid_on", sa.Date(), nullable=True),
        sa.ForeignKeyConstraint(["account_id"], ["accounts.id"], name=op.f("fk_reported_payments_account_id_accounts")),
        sa.ForeignKeyConstraint(
            ["batch_id"], ["import_batches.id"], name=op.f("fk_reported_payments_batch_id_import_batches")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reported_payments")),
        sa.UniqueConstraint("account_id", "key", name=op.f("uq_reported_payments_account_id_key")),
    )
    with op.batch_alter_table("reported_payments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_reported_payments_batch_id"), ["batch_id"], unique=False)
    with op.batch_alter_table("export_cursors", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pending_seq", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("export_cursors", schema=None) as batch_op:
        batch_op.drop_column("pending_seq")
    with op.batch_alter_table("reported_payments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_reported_payments_batch_id"))
    op.drop_table("reported_payments")
