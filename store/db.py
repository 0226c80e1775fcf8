"""Engine, sessions and automatic migrations.

`open_database(url)` creates the engine, checks the connection (a clear StorageError naming the
URL without its password when unreachable), and applies Alembic migrations up to head.

Commands started together on a fresh database must not race on the migrations, so the migration step
is serialised across processes: on SQLite by an exclusive `fcntl.flock` on `<database>.migrate.lock`
next to the file; on PostgreSQL by a transaction-scoped advisory lock (per database and schema) taken
in the migration's own transaction. The process that waited then finds the schema at head.
"""

from __future__ import annotations

import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from core.errors import StorageError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_lock = threading.Lock()
_engines: dict[str, Engine] = {}


def safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def normalise_url(url: str) -> str:
    """postgresql:// and postgres:// use psycopg 3."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def make_engine(url: str) -> Engine:
    url = normalise_url(url)
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StorageError(f"QUORUM_DATABASE_URL is not a valid database URL: {url[:40]!r}") from None
    kwargs: dict = {"future": True, "pool_pre_ping": True}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _sqlite_folder(Path(parsed.database))
        kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
    elif parsed.get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": 5}
    try:
        engine = create_engine(url, **kwargs)
    except (ArgumentError, ImportError) as exc:
        raise StorageError(f"cannot use database {safe_url(url)}: {exc}") from None
    if parsed.get_backend_name() == "sqlite":
        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _):  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    return engine


def _sqlite_folder(path: Path) -> None:
    """Create the SQLite file's folder; a path under a file (or a directory named like the database)
    is one StorageError naming the path."""
    if path.is_dir():
        raise StorageError(f"SQLite database {path} is a directory; point QUORUM_DATABASE_URL at a file")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise StorageError(f"cannot create the SQLite database {path}: {parent} is a file, not a folder; "
                                   "check QUORUM_DATABASE_URL")
            break
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create the folder of the SQLite database {path}: "
                           f"{exc.strerror or type(exc).__name__}; check QUORUM_DATABASE_URL") from None


def check_connection(engine: Engine) -> None:
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except (OperationalError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:200]
        raise StorageError(f"database {safe_url(str(engine.url))} is unreachable: {reason}") from None


@contextmanager
def _sqlite_migration_lock(engine: Engine) -> Iterator[None]:
    """An exclusive lock on `<database>.migrate.lock` for the migration step (other processes wait)."""
    import fcntl

    db = engine.url.database
    if not db or db == ":memory:" or db.startswith("file:"):
        yield
        return
    lock_path = Path(db).with_name(Path(db).name + ".migrate.lock")
    try:
        fh = open(lock_path, "a+b")  # noqa: SIM115 - held for the whole block
    except OSError as exc:
        raise StorageError(f"cannot create the migration lock {lock_path}: {exc.strerror or exc}") from None
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        yield
    finally:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        finally:
            fh.close()


def _pg_migration_lock(conn: Any) -> None:
    """A transaction-scoped advisory lock for this database and schema (released at commit)."""
    where = conn.execute(text("SELECT current_database() || '.' || coalesce(current_schema(), '')")).scalar_one()
    key = zlib.crc32(f"quorum.migrate:{where}".encode()) - 2**31  # a stable signed 32-bit key
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def migrate(engine: Engine) -> None:
    """Apply Alembic migrations up to head (idempotent), one process at a time (see the module doc)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = None
    backend = engine.url.get_backend_name()
    outer = _sqlite_migration_lock(engine) if backend == "sqlite" else nullcontext()
    try:
        with outer, engine.begin() as conn:
            if backend == "postgresql":
                _pg_migration_lock(conn)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except (OperationalError, DBAPIError) as exc:
        if isinstance(exc, IntegrityError):
            raise
        raise storage_error(exc, str(engine.url)) from exc


def open_database(url: str, *, run_migrations: bool = True) -> Engine:
    url = normalise_url(url)
    with _lock:
        if url in _engines:
            return _engines[url]
        engine = make_engine(url)
        check_connection(engine)
        if run_migrations:
            migrate(engine)
        _engines[url] = engine
        return engine


def dispose_all() -> None:
    with _lock:
        for e in _engines.values():
            e.dispose()
        _engines.clear()


def get_session_factory(settings=None) -> sessionmaker[Session]:  # type: ignore[no-untyped-def]
    if settings is None:
        from core.settings import load_settings

        settings = load_settings()
    return sessionmaker(open_database(settings.database_url), expire_on_commit=False, future=True)


def storage_error(exc: BaseException, url: str | None = None) -> StorageError:
    """A database that went away or refuses writes (connection lost, read-only file, disk full) as one
    clear StorageError naming the database without its password."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    where = f"database {safe_url(url)}" if url else "the database"
    return StorageError(f"{where} failed: {reason[0][:200] if reason else type(exc).__name__}")


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: everything commits together or nothing does. A lost or unwritable database
    is a StorageError (one clear line); constraint violations stay what they are."""
    session = factory()
    try:
        yield session
        session.commit()
    except (OperationalError, DBAPIError) as exc:
        try:
            session.rollback()
        except Exception:  # noqa: BLE001 - the connection is gone; the original error matters
            pass
        if isinstance(exc, IntegrityError):
            raise
        bind = session.get_bind()
        raise storage_error(exc, str(bind.url) if bind is not None else None) from exc
    except BaseException:
        session.rollback()
        raise
    finally:
        try:
            session.close()
        except Exception:  # noqa: BLE001 - closing a dead connection
            pass
