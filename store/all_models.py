"""Imports every table module so Base.metadata is complete (Alembic autogenerate, create_all)."""

import store.models  # noqa: F401

for _name in ("store.outbox", "store.llm_cache"):
    try:
        __import__(_name)
    except ImportError:  # a table module not written yet
        pass
