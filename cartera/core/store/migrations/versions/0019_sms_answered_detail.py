"""A text its sender answered has a detail ("" at least): no detail now means a killed sender's text

The node settles the texts a killed sender left unanswered, found by their missing detail (a receipt may already
have moved such a text's state on). Before, a sender stored its gateway's detail as it came, often none: every text
its sender answered (no longer queued, or holding a gateway id) is marked answered, so the first reconcile does not
settle the site's history again.

Revision ID: 0019_sms_answered_detail
Revises: 0018_activity_outcome_120
"""

from __future__ import annotations

from alembic import op

revision = "0019_sms_answered_detail"
down_revision = "0018_activity_outcome_120"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        "UPDATE sms_messages SET detail = '' WHERE detail IS NULL AND (state <> 'queued' OR gateway_id IS NOT NULL)"
    )


def downgrade() -> None:
    """Nothing to undo: an empty detail reads as none before 0019."""
