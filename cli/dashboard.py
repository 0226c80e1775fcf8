"""`quorum dashboard`: the web dashboard (pages + JSON API), bound to 127.0.0.1 by default."""

from __future__ import annotations

from typing import Annotated

import typer

from cli.common import err, out
from cli.common import settings_or_fail as _settings

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command("dashboard")
def dashboard_cmd(
    host: Annotated[str, typer.Option("--host", metavar="HOST", help="interface to bind (0.0.0.0 exposes it to the network)")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", metavar="PORT", help="TCP port")] = 8000,
    reports_dir: Annotated[str, typer.Option("--reports", metavar="DIR", help="where `quorum backtest` wrote its reports")] = "reports",
) -> None:
    """Serve the dashboard: overview, cycles, leaderboard, trades, backtests and /api (controls need
    QUORUM_DASHBOARD_TOKEN)."""
    from store.db import safe_url

    settings = _settings()
    if host not in ("127.0.0.1", "localhost", "::1") and not settings.dashboard_token:
        err.print("[yellow]warning:[/yellow] serving beyond loopback; the pages are read-only and the controls "
                  "stay disabled without QUORUM_DASHBOARD_TOKEN", highlight=False)
    out.print(f"dashboard on http://{host}:{port}/ · database {safe_url(settings.database_url)} · "
              f"controls {'enabled (token set)' if settings.dashboard_token else 'disabled (no QUORUM_DASHBOARD_TOKEN)'}",
              highlight=False)
    from dashboard.app import serve

    serve(host=host, port=port, reports_dir=reports_dir)
