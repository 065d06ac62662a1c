"""compliance: debtor-requested contact hours and phone line types

Revision ID: 0007_contact_prefs
Revises: 0006_web
"""

from __future__ import annotations

revision = "0007_contact_prefs"
down_revision = "0006_web"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
