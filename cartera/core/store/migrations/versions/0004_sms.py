"""SMS: templates, inbound messages, opt-out

Revision ID: 0004_sms
Revises: 0003_archival
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cartera.core.store.schema

revision = "0004_sms"
down_revision = "0003_archival"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sms_inbound",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("phone", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("received_at", cartera.core.store.schema.UTCDateTime(), nullable=False),
        sa.Column("gateway_id", sa.String(length=128), nullable=True),
        sa.Column("opt_out", sa.String(length=16), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sms_inbound")),
        sa.UniqueConstraint("site", "gateway_id", name=op.f("uq_sms_inbound_site_gateway_id")),
    )
    with op.batch_alter_table("sms_inbound", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sms_inbound_phone"), ["phone"], unique=False)
        batch_op.create_index(batch_op.f("ix_sms_inbound_site"), ["site"], unique=False)
    op.create_table(
        "sms_opt_outs",
        sa.Column("e164", sa.String(length=20), nullable=False),
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("at", cartera.core.store.schema.UTCDateTime(), nullable=False),
        sa.Column("keyword", sa.String(length=16), nullable=False),
        sa.Column("inbound_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["inbound_id"], ["sms_inbound.id"], name=op.f("fk_sms_opt_outs_inbound_id_sms_inbound")
        ),
        sa.PrimaryKeyConstraint("e164", name=op.f("pk_sms_opt_outs")),
    )


def downgrade() -> None:
    op.drop_table("sms_opt_outs")
    with op.batch_alter_table("sms_inbound", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sms_inbound_site"))
        batch_op.drop_index(batch_op.f("ix_sms_inbound_phone"))
    op.drop_table("sms_inbound")
