"""supervisors: sign-in pre-sessions, so the sign-in form's CSRF token is issued by the server

Revision ID: 0009_web_presessions
Revises: 0008_portfolio_identity
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cartera.core.store.schema

revision = "0009_web_presessions"
down_revision = "0008_portfolio_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_presessions",
        sa.Column("token_sha256", sa.String(length=64), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("expires_at", cartera.core.store.schema.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("token_sha256", name=op.f("pk_web_presessions")),
    )
    op.create_index(op.f("ix_web_presessions_expires_at"), "web_presessions", ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_web_presessions_expires_at"), table_name="web_presessions")
    op.drop_table("web_presessions")
