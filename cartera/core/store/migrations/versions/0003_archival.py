"""recordings: retention date, legal hold and purge time

Revision ID: 0003_archival
Revises: 0002_compliance
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cartera.core.store.schema

revision = "0003_archival"
down_revision = "0002_compliance"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("recordings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("retain_until", cartera.core.store.schema.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("legal_hold", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("purged_at", cartera.core.store.schema.UTCDateTime(), nullable=True))
        batch_op.create_index(batch_op.f("ix_recordings_retain_until"), ["retain_until"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("recordings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recordings_retain_until"))
        batch_op.drop_column("purged_at")
        batch_op.drop_column("legal_hold")
        batch_op.drop_column("retain_until")
