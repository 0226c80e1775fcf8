"""The `quorum` command: the root app, its command groups and the one-line error handling."""

from __future__ import annotations

import functools
import os
import sys
import traceback
import warnings
from typing import Annotated

import typer

from cli.common import err
from core.errors import QuorumError

warnings.filterwarnings("ignore", category=DeprecationWarning)
warnings.filterwarnings("ignore", category=FutureWarning)

app = typer.Typer(add_completion=False, rich_markup_mode=None, no_args_is_help=True,
                  pretty_exceptions_enable=False,
                  help="Quorum: an autonomous crypto-futures trading cycle (paper by default).")


def version_string() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"quorum {version('quorum')}"
    except PackageNotFoundError:  # run from a source tree without an install
        return "quorum (not installed)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(version_string())
        raise typer.Exit(0)


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                                help="print the version and exit")] = False) -> None:
    """Quorum: an autonomous crypto-futures trading cycle (paper by default)."""


def _register() -> None:
    from cli import backtest as cli_backtest
    from cli import dashboard as cli_dashboard
    from cli import data as cli_data
    from cli import doctor as cli_doctor
    from cli import live as cli_live
    from cli import outbox as cli_outbox
    from cli import trading as cli_trading

    app.registered_commands += cli_trading.app.registered_commands  # cycle, demo, monitor, positions, ...
    app.registered_commands += cli_doctor.app.registered_commands  # doctor
    app.add_typer(cli_data.app, name="data")
    app.add_typer(cli_outbox.app, name="outbox")
    app.registered_commands += cli_backtest.app.registered_commands  # backtest, leaderboard, export
    app.registered_commands += cli_live.app.registered_commands  # reconcile, enter, exit
    app.add_typer(cli_live.live_app, name="live")
    app.registered_commands += cli_dashboard.app.registered_commands  # dashboard


_register()


@app.command("warm")
def warm(socket_path: Annotated[str | None, typer.Option("--socket", metavar="PATH",
                                                        help="the socket (default: one per user and checkout)")] = None) -> None:
    """Keep Quorum loaded: `quorum` commands of this checkout then start in milliseconds, not seconds."""
    # the console script runs `cli.warm.main` before this app exists; from here (`python -m cli.app warm`),
    # start it afresh: this process already has a signal-watching thread, and a warm process forks
    from cli import warm as warm_process

    warm_process.exec_afresh(socket_path)


@functools.cache
def click_command():  # type: ignore[no-untyped-def]
    """The click command typer builds from `app` (what `app()` builds on every call: 50 ms; built
    once here, and by `quorum warm` before it forks)."""
    return typer.main.get_command(app)


def main() -> None:
    from cli import lifecycle

    lifecycle.handle_termination()  # SIGTERM/SIGHUP unwind like Ctrl-C
    try:
        click_command()(prog_name="quorum")
    except QuorumError as exc:
        if os.environ.get("QUORUM_DEBUG"):
            traceback.print_exc()
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(2)
    except lifecycle.Terminated as exc:
        err.print(f"terminated ({exc}): stopped cleanly", highlight=False)
        lifecycle.exit_now(128 + exc.signum)
    except KeyboardInterrupt:
        err.print("interrupted")
        lifecycle.exit_now(130)
    except SystemExit as exc:
        if lifecycle.interrupted(exc):
            err.print("interrupted")
            lifecycle.exit_now(130)
        raise
    except Exception as exc:  # noqa: BLE001 - one clear line; QUORUM_DEBUG=1 shows the traceback
        if os.environ.get("QUORUM_DEBUG"):
            raise
        from sqlalchemy.exc import DBAPIError

        if isinstance(exc, DBAPIError):  # a database error outside a unit of work: same one line
            from store.db import storage_error

            err.print(f"[red]error:[/red] {storage_error(exc)}", highlight=False, markup=True)
            sys.exit(2)
        err.print(f"[red]error:[/red] {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''} "
                  "(set QUORUM_DEBUG=1 for the traceback)", highlight=False)
        sys.exit(1)


def entry() -> None:
    """The `quorum` console script: `main()`, then a quick exit (see lifecycle.quick_exit)."""
    from cli import lifecycle

    try:
        main()
    except SystemExit as exc:
        lifecycle.quick_exit(exc.code)
    lifecycle.quick_exit(0)


if __name__ == "__main__":
    entry()
