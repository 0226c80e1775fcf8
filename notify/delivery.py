"""Delivery of outbox posts to a sink (Telegram or console).

Delivery policy (restarts, retries, duplicates)
-----------------------------------------------
1. Every post is a row in the outbox (store/outbox.py) with a deterministic key before anything is
   sent; enqueuing the same key again returns the existing row, so a retried task or a re-run cycle
   never creates a second post.
2. Before a post is sent it is claimed: its status becomes `in_flight` (attempts + 1) in a committed
   transaction, with a conditional UPDATE that only succeeds on a `pending`/`failed` row without a
   message id (two deliverers never send the same post).
3. When Telegram answers, the message id is stored and the post becomes `sent` in the next commit.
   A post with a stored message id is never sent again, by anything.
4. An `in_flight` post found by a later run means the previous run stopped (crash, kill, database
   outage) between sending and storing the id, or the request's outcome is unknown (a read timeout
   after Telegram may have received it). The message may or may not be in the channel, so the post is
   NOT sent again automatically: it is listed in the report and the log. After checking the channel,
   an operator releases it with `quorum outbox --resend-in-flight KEY` (back to `pending`), or leaves
   it. Quorum prefers a missing post to a duplicate one.
5. Replies (TP1, stop moves, exits) are sent as Telegram replies to their entry post's stored message
   id. If the parent is not sent yet, the reply waits (stays `pending`) for a later run. If the parent
   is `dead` or was never enqueued, the reply is sent on its own, so the exit still reaches readers.
6. Failures: a transient failure that outlasts the sink's own retries (network errors and 5xx with
   backoff, 429 waited out) marks the post `failed`; it is retried by later runs until `max_attempts`,
   then `dead`. A message Telegram refuses (bad request) is `dead` at once. A configuration problem
   (bad token, channel not found, bot not allowed to post) stops the batch, puts the claimed post back
   to `pending` (it was not sent) and is reported once with the fix; no other post is tried.
7. Delivery never raises into the trading cycle: every error is recorded on its row (without the
   token) and summarised in the returned DeliveryReport. It runs as its own task after persistence.
8. Without a token the console sink prints each post once (plain text; `printed_at` is set so later
   runs do not print it again) and the post stays `pending` in the outbox; `quorum outbox --send`
   delivers them once a token is set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from notify.telegram import (
    DeliveryConfigError,
    DeliveryRejected,
    DeliveryTransient,
    DeliveryUncertain,
    Sink,
)
from store import outbox
from store.base import utcnow
from store.outbox import OutboxPost

logger = logging.getLogger("quorum.notify")

RESEND_HINT = "check the channel, then `quorum outbox --resend-in-flight KEY` to send it again"


@dataclass
class DeliveryReport:
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    sent_keys: list[str] = field(default_factory=list)
    in_flight_keys: list[str] = field(default_factory=list)  # outcome unknown: not resent automatically
    waiting_keys: list[str] = field(default_factory=list)  # replies whose parent is not sent yet
    dead_keys: list[str] = field(default_factory=list)
    console: int = 0  # posts printed to the console (still pending)
    config_error: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors and self.config_error is None

    def summary(self, *, include_config_error: bool = True) -> str:
        parts = [f"sent {self.sent}", f"failed {self.failed}", f"skipped {self.skipped}"]
        if self.console:
            parts.append(f"printed {self.console} (no Telegram token; still pending)")
        if self.in_flight_keys:
            parts.append(f"in flight {len(self.in_flight_keys)} ({RESEND_HINT})")
        if self.waiting_keys:
            parts.append(f"waiting for parent {len(self.waiting_keys)}")
        if self.config_error and include_config_error:
            parts.append(f"Telegram not configured correctly: {self.config_error}")
        return "outbox delivery: " + ", ".join(parts)


def _emit(log: Any, level: int, message: str) -> None:
    if log is None:
        logger.log(level, message)
    elif isinstance(log, logging.Logger | logging.LoggerAdapter):
        log.log(level, message)
    else:
        log(message)


def _claim(session: Session, post_id: int, chat_id: str | None) -> bool:
    result = session.execute(
        update(OutboxPost)
        .where(
            OutboxPost.id == post_id,
            OutboxPost.status.in_(("pending", "failed")),
            OutboxPost.message_id.is_(None),
        )
        .values(status="in_flight", attempts=OutboxPost.attempts + 1, chat_id=chat_id, updated_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return result.rowcount == 1


def deliver_pending(
    session_factory: Callable[[], Session],
    sink: Sink,
    *,
    log: logging.Logger | Callable[[str], Any] | None = None,
    keys: Iterable[str] | None = None,
    max_attempts: int = 5,
    limit: int | None = None,
) -> DeliveryReport:
    """Send pending (and retryable failed) posts oldest first; see the module docstring for the policy.

    Never raises (except KeyboardInterrupt/SystemExit): errors are recorded and reported.
    """
    report = DeliveryReport()
    wanted = set(keys) if keys is not None else None
    try:
        with session_factory() as s:
            report.in_flight_keys = [p.key for p in outbox.in_flight(s)]
            todo = [(p.id, p.key) for p in outbox.pending(s, max_attempts=max_attempts)
                    if wanted is None or p.key in wanted]
    except Exception as exc:  # noqa: BLE001 - the outbox being unreadable must not fail the cycle
        report.errors.append(f"outbox unavailable: {type(exc).__name__}: {exc}")
        _emit(log, logging.ERROR, report.errors[-1])
        return report
    if limit is not None:
        todo = todo[:limit]
    if report.in_flight_keys:
        _emit(log, logging.WARNING,
              f"{len(report.in_flight_keys)} outbox post(s) in flight from an earlier run, outcome unknown, "
              f"not resent: {', '.join(report.in_flight_keys[:10])}; {RESEND_HINT}")
    if not todo:
        return report

    if not getattr(sink, "records_delivery", False):
        return _print_only(session_factory, sink, todo, report, log)

    opener = getattr(sink, "open", None)
    try:
        if opener is not None:
            opener()
    except DeliveryConfigError as exc:
        report.config_error = str(exc)
        report.skipped += len(todo)
        _emit(log, logging.ERROR, f"Telegram delivery stopped: {exc}")
        return report
    except Exception as exc:  # noqa: BLE001
        msg = _safe(sink, exc)
        report.errors.append(f"could not open {getattr(sink, 'name', 'sink')}: {msg}")
        report.skipped += len(todo)
        _emit(log, logging.ERROR, report.errors[-1])
        return report
    try:
        for post_id, key in todo:
            try:
                stop = _deliver_one(session_factory, sink, post_id, key, report, log, max_attempts)
            except Exception as exc:  # noqa: BLE001 - database trouble mid-batch
                report.errors.append(f"{key}: {type(exc).__name__}: {_safe(sink, exc)}")
                _emit(log, logging.ERROR, f"outbox delivery of {key} failed: {report.errors[-1]}")
                stop = False
            if stop:
                break
    finally:
        closer = getattr(sink, "close", None)
        if closer is not None:
            try:
                closer()
            except Exception:  # noqa: BLE001
                pass
    if report.sent or report.failed or report.errors:
        _emit(log, logging.INFO if report.ok else logging.WARNING, report.summary())
    return report


def _safe(sink: Any, exc: BaseException) -> str:
    scrub = getattr(sink, "scrub", None)
    return scrub(exc) if scrub is not None else str(exc)


def _deliver_one(
    session_factory: Callable[[], Session],
    sink: Sink,
    post_id: int,
    key: str,
    report: DeliveryReport,
    log: Any,
    max_attempts: int,
) -> bool:
    """Deliver one post; returns True when the batch must stop (configuration error)."""
    with session_factory() as s:
        post = s.get(OutboxPost, post_id)
        if post is None or post.message_id is not None or post.status not in ("pending", "failed"):
            report.skipped += 1
            return False
        reply_to: int | None = None
        if post.parent_key:
            parent = outbox.get_post(s, post.parent_key)
            if parent is not None and parent.message_id is not None:
                reply_to = parent.message_id
            elif parent is not None and parent.status != "dead":
                report.waiting_keys.append(key)
                report.skipped += 1
                return False
        text = post.text
        if not _claim(s, post_id, getattr(sink, "chat_id", None)):
            report.skipped += 1
            return False

    try:
        message_id = sink.send(text, reply_to_message_id=reply_to)
    except DeliveryConfigError as exc:
        with session_factory() as s:
            post = s.get(OutboxPost, post_id)
            if post is not None:
                post.status = "pending"  # not sent: configuration errors happen before Telegram accepts it
                post.attempts = max(0, post.attempts - 1)
                outbox.note_error(s, post, str(exc))
                s.commit()
        report.config_error = str(exc)
        report.skipped += 1
        _emit(log, logging.ERROR, f"Telegram delivery stopped: {exc}")
        return True
    except DeliveryUncertain as exc:
        _record(session_factory, post_id, str(exc), status=None)
        report.in_flight_keys.append(key)
        report.errors.append(f"{key}: {exc}")
        _emit(log, logging.WARNING, f"outbox post {key} outcome unknown, left in flight: {exc}; {RESEND_HINT}")
        return False
    except DeliveryRejected as exc:
        _record(session_factory, post_id, str(exc), status="dead")
        report.failed += 1
        report.dead_keys.append(key)
        report.errors.append(f"{key}: {exc}")
        _emit(log, logging.ERROR, f"outbox post {key} rejected, marked dead: {exc}")
        return False
    except DeliveryTransient as exc:
        dead = _record(session_factory, post_id, str(exc), status="failed", max_attempts=max_attempts)
        report.failed += 1
        if dead:
            report.dead_keys.append(key)
        report.errors.append(f"{key}: {exc}")
        _emit(log, logging.WARNING, f"outbox post {key} failed{' (dead)' if dead else ''}: {exc}")
        return False
    except Exception as exc:  # noqa: BLE001 - unknown: may or may not be out, so keep it in flight
        msg = f"unexpected {type(exc).__name__}: {_safe(sink, exc)}"
        _record(session_factory, post_id, msg, status=None)
        report.in_flight_keys.append(key)
        report.errors.append(f"{key}: {msg}")
        _emit(log, logging.ERROR, f"outbox post {key}: {msg}; left in flight; {RESEND_HINT}")
        return False

    if message_id is None:  # a sink that does not record delivery: leave it pending
        with session_factory() as s:
            post = s.get(OutboxPost, post_id)
            if post is not None:
                post.status = "pending"
                post.attempts = max(0, post.attempts - 1)
                s.commit()
        report.skipped += 1
        return False
    with session_factory() as s:
        post = s.get(OutboxPost, post_id)
        assert post is not None
        outbox.mark_sent(s, post, int(message_id), chat_id=getattr(sink, "chat_id", None))
        s.commit()
    report.sent += 1
    report.sent_keys.append(key)
    return False


def _record(
    session_factory: Callable[[], Session],
    post_id: int,
    error: str,
    *,
    status: str | None,
    max_attempts: int | None = None,
) -> bool:
    """Store the error (and status); returns True when the post ended up dead."""
    with session_factory() as s:
        post = s.get(OutboxPost, post_id)
        if post is None:
            return False
        if status is None:
            outbox.note_error(s, post, error)
            dead = False
        else:
            dead = status == "dead" or (max_attempts is not None and post.attempts >= max_attempts)
            outbox.mark_failed(s, post, error, dead=dead)
        s.commit()
        return dead


def _print_only(
    session_factory: Callable[[], Session],
    sink: Any,
    todo: list[tuple[int, str]],
    report: DeliveryReport,
    log: Any,
) -> DeliveryReport:
    """Console sink: print each post once (printed_at), leave it pending for a later Telegram delivery."""
    with session_factory() as s:
        for post_id, key in todo:
            post = s.get(OutboxPost, post_id)
            report.skipped += 1
            if post is None or post.printed_at is not None:
                continue
            try:
                try:
                    sink.send(post.text, None, key=key)
                except TypeError:
                    sink.send(post.text, None)
            except Exception as exc:  # noqa: BLE001
                report.errors.append(f"{key}: console: {exc}")
                continue
            post.printed_at = utcnow()
            report.console += 1
        s.commit()
    return report
