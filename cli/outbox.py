"""`quorum outbox`: list the channel posts in the outbox, deliver pending ones, release stuck ones.

    quorum outbox                         list posts (key, kind, status, message id, created)
    quorum outbox --status pending        only one status
    quorum outbox --send                  deliver pending posts (needs QUORUM_TELEGRAM_TOKEN and _CHANNEL)
    quorum outbox --resend-in-flight KEY  put a post stuck in flight back to pending (check the channel first)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer
from rich.table import Table

app = typer.Typer(rich_markup_mode=None, help="Channel posts waiting in, or sent from, the outbox.", no_args_is_help=False)

# Injection points (tests, embedding): when set, used instead of settings / store.db.
session_factory_provider: Callable[[Any], Callable[[], Any]] | None = None
sink_provider: Callable[[Any], Any] | None = None


def _settings() -> Any:
    from core.settings import load_settings

    return load_settings()


def _session_factory(settings: Any) -> Callable[[], Any]:
    if session_factory_provider is not None:
        return session_factory_provider(settings)
    from store.db import get_session_factory  # the lead's module; imported lazily on purpose

    return get_session_factory(settings)


def _sink(settings: Any) -> Any:
    if sink_provider is not None:
        return sink_provider(settings)
    from notify.telegram import sink_from_settings

    return sink_from_settings(settings)


@app.callback(invoke_without_command=True)
def outbox(
    ctx: typer.Context,
    send: bool = typer.Option(False, "--send", help="Deliver pending posts to Telegram (token and channel must be set)."),
    status: str | None = typer.Option(None, "--status", metavar="STATUS", help="Only posts with this status: pending, in_flight, sent, failed, dead."),
    resend_in_flight: list[str] | None = typer.Option(
        None, "--resend-in-flight", metavar="KEY",
        help="Put a post stuck in flight (or dead/failed) back to pending; it does not send it (add --send). Check the channel first: it may be posted.",
    ),
    limit: int = typer.Option(100, "--limit", min=1, metavar="N", help="Show at most this many posts (newest last)."),
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    from rich.text import Text

    from cli.common import out as console
    from cli.common import print_table
    from core.errors import QuorumError
    from store import outbox as repo

    try:
        settings = _settings()
        factory = _session_factory(settings)
    except QuorumError as exc:
        console.print(Text(f"configuration error: {exc}", style="red"))
        raise typer.Exit(2) from None

    if resend_in_flight:
        code = 0
        with factory() as s:
            for key in resend_in_flight:
                try:
                    repo.release_in_flight(s, key)
                    console.print(Text(f"released {key}: pending again, it will be sent by the next delivery"))
                except KeyError as exc:  # no such post: bad input
                    console.print(Text(str(exc.args[0] if exc.args else exc), style="red"))
                    code = max(code, 2)
                except ValueError as exc:  # a post in a state that cannot be released
                    console.print(Text(str(exc.args[0] if exc.args else exc), style="red"))
                    code = max(code, 1)
            s.commit()
        if code and not send:
            raise typer.Exit(code)

    if send:
        from notify.delivery import deliver_pending

        sink = _sink(settings)
        if not getattr(sink, "records_delivery", False):
            console.print(
                "[yellow]No Telegram token/channel set[/yellow] (QUORUM_TELEGRAM_TOKEN, QUORUM_TELEGRAM_CHANNEL): "
                "posts stay pending in the outbox."
            )
            raise typer.Exit(1)
        lines: list[str] = []
        report = deliver_pending(factory, sink, log=lines.append)
        summary = report.summary(include_config_error=False)
        if report.summary() not in lines and summary not in lines:
            lines.append(summary)
        for line in dict.fromkeys(lines):  # each message once, in order
            console.print(Text(line))
        if report.config_error:
            raise typer.Exit(2)
        if not report.ok:
            raise typer.Exit(1)
        return

    try:
        with factory() as s:
            posts = repo.list_posts(s, status=status)
            rows = [
                (p.key, p.kind, p.status, "" if p.message_id is None else str(p.message_id),
                 p.created_at.strftime("%Y-%m-%d %H:%M:%S"), p.attempts, p.last_error or "")
                for p in posts
            ]
    except ValueError as exc:
        console.print(Text(str(exc), style="red"))
        raise typer.Exit(2) from None
    rows = rows[-limit:]
    table = Table(title=f"outbox ({len(rows)} post{'s' if len(rows) != 1 else ''})")
    for col in ("key", "kind", "status", "message id", "created (UTC)", "tries", "last error"):
        table.add_column(col, overflow="fold")
    colors = {"sent": "green", "pending": "yellow", "in_flight": "magenta", "failed": "red", "dead": "red"}
    for key, kind, st, mid, created, tries, err in rows:
        table.add_row(Text(key), Text(kind), Text(st, style=colors.get(st, "white")), mid, created, str(tries),
                      Text(err[:80]))
    print_table(table, console)
    stuck = [r[0] for r in rows if r[2] == "in_flight"]
    if stuck:
        console.print(
            f"[magenta]{len(stuck)} post(s) in flight[/magenta]: a run stopped between sending and storing the "
            "message id, or the outcome was unknown. Check the channel; if missing, "
            "`quorum outbox --resend-in-flight KEY`."
        )
