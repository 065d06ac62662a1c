"""web_users.extension unique per site, not per store

Sites sharing a store each have their own dialer, so each may have a seat ``agent-01``: the directory refuses an
extension another user granted the same site holds, and the store keeps a plain index.

Revision ID: 0017_extension_per_site
Revises: 0016_activity_attempt
"""

from __future__ import annotations

from alembic import op

revision = "0017_extension_per_site"
down_revision = "0016_activity_attempt"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("web_users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_users_extension"))
        batch_op.create_index(batch_op.f("ix_web_users_extension"), ["extension"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("web_users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_web_users_extension"))
        batch_op.create_index(batch_op.f("ix_web_users_extension"), ["extension"], unique=True)
