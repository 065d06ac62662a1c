"""supervisors: users, roles, grants, sessions

Revision ID: 0006_web
Revises: 0005_crm
"""

from __future__ import annotations

revision = "0006_web"
down_revision = "0005_crm"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
