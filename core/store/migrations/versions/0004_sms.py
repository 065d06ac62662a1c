"""SMS: templates, inbound messages, opt-out

Revision ID: 0004_sms
Revises: 0003_archival
"""

from __future__ import annotations

revision = "0004_sms"
down_revision = "0003_archival"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
