"""Alembic environment: uses the connection handed in by store.db.migrate, or the URL from settings."""

from __future__ import annotations

from alembic import context
from sqlalchemy import pool

import store.all_models  # noqa: F401  (registers every table on Base.metadata)
from store.base import Base

config = context.config
target_metadata = Base.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True,
                          compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    from sqlalchemy import create_engine

    from core.settings import load_settings
    from store.db import normalise_url

    url = config.get_main_option("sqlalchemy.url") or load_settings().database_url
    engine = create_engine(normalise_url(url), poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()


run()
