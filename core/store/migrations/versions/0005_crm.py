"""creditor exchange: assignment files, mappings, export sequences

Revision ID: 0005_crm
Revises: 0004_sms
"""

from __future__ import annotations

revision = "0005_crm"
down_revision = "0004_sms"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
