"""One run per account at a time: a lock held for a whole cycle, monitor run or account command.

Why a database lock and not a Prefect concurrency limit: it holds for CLI runs without any Prefect
server, for flow runs on any worker, and for both at once, and it dies with its holder (no stale
lock after a crash or SIGKILL).

- PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) on a dedicated connection, keyed
  by the account (mode) and the database; released by `pg_advisory_unlock`, or by PostgreSQL when the
  holder's connection ends (crash, kill -9).
- SQLite: an exclusive `flock` on a file next to the database (`<db>.lock`, the holder's pid and what
  it runs written in it); the kernel releases it when the holder's process ends.

The second run waits up to `settings.account_lock_wait_s` seconds (0: do not wait), saying once on
stderr what it waits for, then raises AccountBusy with a clear message; nothing of it has run.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from core.errors import QuorumError

POLL_S = 0.2
_held = threading.local()  # re-entrant within one thread (a CLI command calling a flow that also locks)


class AccountBusy(QuorumError):
    """Another run holds the account's lock."""


def _key(url: str, mode: str) -> int:
    """A stable signed 64-bit advisory-lock key per (account, database)."""
    h = hashlib.blake2b(f"quorum-account:{url}:{mode}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big", signed=True)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextmanager
def account_lock(settings, what: str, *, wait_s: float | None = None,  # type: ignore[no-untyped-def]
                 on_wait: Callable[[str], None] = _say) -> Iterator[None]:
    """Hold the lock of `settings.mode`'s account in `settings.database_url` for the block."""
    wait = settings.account_lock_wait_s if wait_s is None else wait_s
    token = (settings.database_url, settings.mode)
    held: set = getattr(_held, "tokens", set())
    if token in held:  # this thread already holds it
        yield
        return
    path = settings.sqlite_path
    acquire = _sqlite_lock if path is not None else _pg_lock
    with acquire(settings, what, wait, on_wait):
        held.add(token)
        _held.tokens = held
        try:
            yield
        finally:
            held.discard(token)


def _waited_too_long(mode: str, what: str, holder: str, wait: float) -> AccountBusy:
    return AccountBusy(f"the {mode} account is busy: {holder} is running on it; {what} did not start "
                       f"(waited {wait:.0f} s; QUORUM_ACCOUNT_LOCK_WAIT_S sets how long to wait)")


@contextmanager
def _sqlite_lock(settings, what: str, wait: float, on_wait: Callable[[str], None]) -> Iterator[None]:  # type: ignore[no-untyped-def]
    import fcntl

    db: Path = settings.sqlite_path
    if str(db) in ("", ":memory:"):
        yield
        return
    lock_path = db.with_name(db.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        said = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _read_holder(lock_path)
                if time.monotonic() >= deadline:
                    raise _waited_too_long(settings.mode, what, holder, wait) from None
                if not said:
                    on_wait(f"waiting for the {settings.mode} account: {holder} is running on it "
                            f"(up to {wait:.0f} s)")
                    said = True
                time.sleep(POLL_S)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{what} (pid {os.getpid()})".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "another run"
    except OSError:
        return "another run"


@contextmanager
def _pg_lock(settings, what: str, wait: float, on_wait: Callable[[str], None]) -> Iterator[None]:  # type: ignore[no-untyped-def]
    from store.db import open_database

    engine = open_database(settings.database_url)
    key = _key(settings.database_url, settings.mode)
    conn = engine.connect()
    try:
        # the holder's description, visible to the waiting run through pg_stat_activity
        conn.execute(text("SELECT set_config('application_name', :n, false)"),
                     {"n": f"quorum {what} (pid {os.getpid()})"[:63]})
        conn.commit()
        deadline = time.monotonic() + wait
        said = False
        while True:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
            conn.commit()
            if got:
                break
            holder = conn.execute(text(
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                "AND l.classid::text::bigint = :hi AND l.objid::text::bigint = :lo LIMIT 1"),
                {"hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF}).scalar() or "another run"
            conn.commit()
            if time.monotonic() >= deadline:
                raise _waited_too_long(settings.mode, what, holder, wait)
            if not said:
                on_wait(f"waiting for the {settings.mode} account: {holder} is running on it (up to {wait:.0f} s)")
                said = True
            time.sleep(POLL_S)
        try:
            yield
        finally:
            try:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
            except SQLAlchemyError:  # the connection is lost: PostgreSQL released the lock with its session
                conn.invalidate()
    finally:
        conn.close()
