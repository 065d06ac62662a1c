"""Alembic environment: core passes an open connection; ``alembic`` CLI use is not needed."""

from __future__ import annotations

from alembic import context

from cartera.core.store.schema import Base

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
