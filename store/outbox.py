"""The outbox: every channel post is a row before it is ever sent.

A post has a deterministic `key` (for example ``f"{cycle_id}:{symbol}:entry"`` or
``f"{position_id}:tp1"``); enqueuing the same key twice returns the existing row, so a retried task
or a restarted cycle never creates a second post. Replies (exits and updates) carry the key of their
entry post in `parent_key` and are sent as Telegram replies to the parent's stored `message_id`.

Status lifecycle (see notify/delivery.py for the delivery policy):

    pending ──► in_flight ──► sent
       ▲            │
       │            ├──► failed  (transient error; retried on a later run until max attempts)
       │            └──► dead    (permanent: rejected by Telegram or too many attempts)
       └── release_in_flight()   (manual, after checking the channel: `quorum outbox --resend-in-flight KEY`)

Portable SQL only (SQLite and PostgreSQL). Functions take a Session and never commit, except where
noted: the caller owns the transaction.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String, Text, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from store.base import Base, UTCDateTime, utcnow

POST_KINDS: tuple[str, ...] = (
    "entry", "tp1", "breakeven", "trailing", "tp2", "stop", "breakeven_stop", "trailing_stop", "stale", "time",
    "news", "exit",
    "daily_stats", "market_pulse",
)
STATUSES: tuple[str, ...] = ("pending", "in_flight", "sent", "failed", "dead")
ERROR_MAX = 500


class OutboxPost(Base):
    __tablename__ = "outbox_posts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(200), unique=True, nullable=False)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    symbol: Mapped[str | None] = mapped_column(String(64), nullable=True)
    position_id: Mapped[str | None] = mapped_column(String(100), nullable=True, index=True)
    parent_key: Mapped[str | None] = mapped_column(String(200), nullable=True)
    text: Mapped[str] = mapped_column(Text, nullable=False)
    status: Mapped[str] = mapped_column(String(16), nullable=False, default="pending", index=True)
    message_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    chat_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    last_error: Mapped[str | None] = mapped_column(String(ERROR_MAX), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    # when the console sink printed it (no token): printed once, the post stays pending for Telegram
    printed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    def __repr__(self) -> str:
        return f"OutboxPost(key={self.key!r}, kind={self.kind!r}, status={self.status!r}, message_id={self.message_id})"


def get_post(session: Session, key: str) -> OutboxPost | None:
    return session.scalar(select(OutboxPost).where(OutboxPost.key == key))


def enqueue(
    session: Session,
    key: str,
    kind: str,
    text: str,
    symbol: str | None = None,
    position_id: str | None = None,
    parent_key: str | None = None,
) -> OutboxPost:
    """Add a pending post, or return the existing row with this key unchanged (idempotent).

    Uses a SAVEPOINT so a concurrent insert of the same key (unique violation) falls back to the
    existing row without spoiling the caller's transaction.
    """
    if kind not in POST_KINDS:
        raise ValueError(f"unknown post kind {kind!r}; allowed: {', '.join(POST_KINDS)}")
    existing = get_post(session, key)
    if existing is not None:
        return existing
    now = utcnow()
    post = OutboxPost(
        key=key, kind=kind, text=text, symbol=symbol, position_id=position_id, parent_key=parent_key,
        status="pending", attempts=0, created_at=now, updated_at=now,
    )
    try:
        with session.begin_nested():
            session.add(post)
            session.flush()
    except IntegrityError:
        existing = get_post(session, key)
        if existing is None:  # pragma: no cover - a different integrity problem
            raise
        return existing
    return post


def pending(session: Session, *, include_failed: bool = True, max_attempts: int | None = None) -> list[OutboxPost]:
    """Posts waiting to be sent, oldest first (pending, and failed ones below `max_attempts`)."""
    statuses = ["pending", "failed"] if include_failed else ["pending"]
    stmt = select(OutboxPost).where(OutboxPost.status.in_(statuses))
    if max_attempts is not None:
        stmt = stmt.where(OutboxPost.attempts < max_attempts)
    return list(session.scalars(stmt.order_by(OutboxPost.created_at, OutboxPost.id)))


def in_flight(session: Session) -> list[OutboxPost]:
    stmt = select(OutboxPost).where(OutboxPost.status == "in_flight").order_by(OutboxPost.id)
    return list(session.scalars(stmt))


def _clip(error: str) -> str:
    error = " ".join(str(error).split())
    return error if len(error) <= ERROR_MAX else error[: ERROR_MAX - 1] + "…"


def mark_in_flight(session: Session, post: OutboxPost, chat_id: str | None = None) -> OutboxPost:
    if post.message_id is not None or post.status == "sent":
        raise ValueError(f"post {post.key!r} was already sent (message {post.message_id}); it is never sent twice")
    post.status = "in_flight"
    post.attempts = (post.attempts or 0) + 1
    if chat_id is not None:
        post.chat_id = str(chat_id)
    post.updated_at = utcnow()
    return post


def mark_sent(session: Session, post: OutboxPost, message_id: int, chat_id: str | None = None) -> OutboxPost:
    now = utcnow()
    post.status = "sent"
    post.message_id = int(message_id)
    if chat_id is not None:
        post.chat_id = str(chat_id)
    post.last_error = None
    post.sent_at = now
    post.updated_at = now
    return post


def mark_failed(session: Session, post: OutboxPost, error: str, *, dead: bool = False) -> OutboxPost:
    """Record a failed attempt; `dead=True` for a permanent failure that must not be retried.

    The caller passes an error text that is already free of secrets (notify.telegram scrubs the token).
    """
    if post.message_id is not None:
        raise ValueError(f"post {post.key!r} has message id {post.message_id}; it was sent")
    post.status = "dead" if dead else "failed"
    post.last_error = _clip(error)
    post.updated_at = utcnow()
    return post


def note_error(session: Session, post: OutboxPost, error: str) -> OutboxPost:
    """Record an error text without changing the status (e.g. an in-flight post with unknown outcome)."""
    post.last_error = _clip(error)
    post.updated_at = utcnow()
    return post


def release_in_flight(session: Session, key: str) -> OutboxPost:
    """Manual release of a post stuck in flight (after checking the channel does not show it)."""
    post = get_post(session, key)
    if post is None:
        raise KeyError(f"no outbox post with key {key!r}")
    if post.message_id is not None:
        raise ValueError(f"post {key!r} was sent as message {post.message_id}; it is never sent twice")
    if post.status not in ("in_flight", "dead", "failed"):
        raise ValueError(f"post {key!r} is {post.status}, not in flight, failed or dead")
    post.status = "pending"
    post.updated_at = utcnow()
    return post


def parent_message_id(session: Session, parent_key: str) -> int | None:
    return session.scalar(select(OutboxPost.message_id).where(OutboxPost.key == parent_key))


def list_posts(session: Session, status: str | None = None, limit: int | None = None) -> list[OutboxPost]:
    stmt = select(OutboxPost)
    if status is not None:
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; allowed: {', '.join(STATUSES)}")
        stmt = stmt.where(OutboxPost.status == status)
    stmt = stmt.order_by(OutboxPost.created_at, OutboxPost.id)
    if limit is not None:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))
