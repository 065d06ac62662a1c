"""compliance: debtor-requested contact hours and phone line types

Revision ID: 0007_contact_prefs
Revises: 0006_web
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cartera.core.store.schema

revision = "0007_contact_prefs"
down_revision = "0006_web"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "contact_hours",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("hours", sa.JSON(), nullable=False),
        sa.Column("instrument", sa.String(length=512), nullable=True),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("set_by", sa.String(length=128), nullable=False),
        sa.Column("set_at", cartera.core.store.schema.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_contact_hours_account_id_accounts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_contact_hours")),
    )
    op.create_table(
        "phone_line_types",
        sa.Column("phone_id", sa.Integer(), nullable=False),
        sa.Column("line_type", sa.String(length=8), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("set_by", sa.String(length=128), nullable=False),
        sa.Column("set_at", cartera.core.store.schema.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["phone_id"], ["phones.id"], name=op.f("fk_phone_line_types_phone_id_phones"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("phone_id", name=op.f("pk_phone_line_types")),
    )


def downgrade() -> None:
    op.drop_table("phone_line_types")
    op.drop_table("contact_hours")
