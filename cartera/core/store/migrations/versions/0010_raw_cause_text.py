"""contact_attempts.raw_cause as text: a vendor's cause with the dialer's notes outgrew 64 characters

PostgreSQL refused such a cause and the attempt stayed ``placing``. SQLite enforces no length: it stays as it is.

Revision ID: 0010_raw_cause_text
Revises: 0009_web_presessions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_raw_cause_text"
down_revision = "0009_web_presessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("contact_attempts", "raw_cause", existing_type=sa.String(length=64), type_=sa.Text())


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.alter_column("contact_attempts", "raw_cause", existing_type=sa.Text(), type_=sa.String(length=64))
