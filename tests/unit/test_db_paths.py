"""Issue 13 item 27: a SQLite path that cannot be a database is one clear StorageError."""

from __future__ import annotations

import pytest

from core.errors import StorageError
from store.db import open_database


def test_sqlite_path_under_a_file_is_one_clear_error(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    url = f"sqlite:///{tmp_path / 'notes.txt' / 'sub' / 'quorum.db'}"
    with pytest.raises(StorageError, match=r"notes.txt is a file, not a folder; check QUORUM_DATABASE_URL"):
        open_database(url)


def test_sqlite_path_that_is_a_directory_is_one_clear_error(tmp_path) -> None:
    (tmp_path / "quorum.db").mkdir()
    with pytest.raises(StorageError, match=r"quorum.db is a directory"):
        open_database(f"sqlite:///{tmp_path / 'quorum.db'}")


def test_migration_lock_sits_next_to_the_database(tmp_path) -> None:
    open_database(f"sqlite:///{tmp_path / 'db' / 'q.db'}")
    assert (tmp_path / "db" / "q.db.migrate.lock").exists()
