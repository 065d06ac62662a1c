"""identity: a portfolio is (site, creditor, code); grants name the creditor

A grant stored as a bare portfolio code is completed with its creditor when exactly one portfolio of that
code exists at the grant's site now; otherwise it is kept as it is and grants nothing: the user is refused
at sign-in with a message naming it until an admin grants ``CREDITOR/CODE`` (``users grant``).

Revision ID: 0008_portfolio_identity
Revises: 0007_contact_prefs
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_portfolio_identity"
down_revision = "0007_contact_prefs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("portfolios", schema=None) as batch_op:
        batch_op.drop_constraint("uq_portfolios_creditor_id_code", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_portfolios_site_creditor_id_code"), ["site", "creditor_id", "code"]
        )
    with op.batch_alter_table("web_grants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("creditor", sa.String(length=64), nullable=True))
        batch_op.drop_constraint("uq_web_grants_user_id_site_portfolio", type_="unique")
        batch_op.create_unique_constraint(
            batch_op.f("uq_web_grants_user_id_site_creditor_portfolio"), ["user_id", "site", "creditor", "portfolio"]
        )
    connection = op.get_bind()
    bare = connection.execute(
        sa.text("SELECT id, site, portfolio FROM web_grants WHERE portfolio IS NOT NULL AND creditor IS NULL")
    ).all()
    for grant_id, site, code in bare:
        creditors = connection.scalars(
            sa.text(
                "SELECT DISTINCT c.code FROM portfolios p JOIN creditors c ON c.id = p.creditor_id"
                " WHERE p.site = :site AND p.code = :code"
            ),
            {"site": site, "code": code},
        ).all()
        if len(creditors) == 1:
            connection.execute(
                sa.text("UPDATE web_grants SET creditor = :creditor WHERE id = :id"),
                {"creditor": creditors[0], "id": grant_id},
            )


def downgrade() -> None:
    with op.batch_alter_table("web_grants", schema=None) as batch_op:
        batch_op.drop_constraint("uq_web_grants_user_id_site_creditor_portfolio", type_="unique")
        batch_op.create_unique_constraint("uq_web_grants_user_id_site_portfolio", ["user_id", "site", "portfolio"])
        batch_op.drop_column("creditor")
    with op.batch_alter_table("portfolios", schema=None) as batch_op:
        batch_op.drop_constraint("uq_portfolios_site_creditor_id_code", type_="unique")
        batch_op.create_unique_constraint("uq_portfolios_creditor_id_code", ["creditor_id", "code"])
