"""site_leases: the lease one node of a site holds on PostgreSQL, with its fencing token

A standby node takes an expired lease with the next token; every action that must happen once checks the token in
its own transaction (:mod:`cartera.core.store.site_lease`).

Revision ID: 0013_site_leases
Revises: 0012_debtor_accounts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cartera.core.store.schema

revision = "0013_site_leases"
down_revision = "0012_debtor_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "site_leases",
        sa.Column("site", sa.String(length=64), nullable=False),
        sa.Column("token", sa.BigInteger(), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("expires_at", cartera.core.store.schema.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("site", name=op.f("pk_site_leases")),
    )


def downgrade() -> None:
    op.drop_table("site_leases")
