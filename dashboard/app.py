"""The dashboard: a FastAPI app over the store, server-rendered pages (Jinja2), plotly charts with
plotly.js served from the Python package (no CDN), htmx polling for the live parts, and a JSON API
with the same data.

Read-only, except three controls (`POST /api/halt`, `/api/resume`, `/api/close-all`) which need the
token of `QUORUM_DASHBOARD_TOKEN`, sent as `Authorization: Bearer <token>` or from the page after a
login (an HttpOnly, SameSite=Strict cookie holding an HMAC of the token, never the token itself).
No token configured: the controls answer 403. No or a wrong credential: 401 / 403.

A database that is unreachable or a page that fails shows one clear message (HTML or JSON), never
a traceback."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Request
from fastapi.middleware.gzip import GZipMiddleware
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import QuorumError, StorageError
from core.settings import Settings, load_settings
from dashboard import charts
from dashboard import data as q
from store.lock import AccountBusy
from store.repo import jsonable

log = logging.getLogger("quorum.dashboard")
HERE = Path(__file__).resolve().parent
COOKIE = "quorum_dashboard"
NAV = [("/", "Overview"), ("/leaderboard", "Leaderboard"), ("/trades", "Trades"), ("/backtests", "Backtests")]
EXPORT_TYPES = {"json": "application/json", "csv": "text/csv", "tax": "text/csv", "audit": "text/csv"}


# ---- formatting ------------------------------------------------------------------------------
def _f(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def money(x: Any) -> str:
    v = _f(x)
    return "—" if v is None else f"${v:,.2f}"


def smoney(x: Any) -> str:
    v = _f(x)
    return "—" if v is None else f"{'+' if v > 0 else '−' if v < 0 else ''}${abs(v):,.2f}"


def pct(x: Any, digits: int = 2) -> str:
    v = _f(x)
    return "—" if v is None else f"{v:+.{digits}%}"


def pct1(x: Any) -> str:
    v = _f(x)
    return "—" if v is None else f"{v:.1%}"


def num(x: Any, digits: int = 3) -> str:
    v = _f(x)
    return "—" if v is None else f"{v:,.{digits}f}"


def price(x: Any) -> str:
    v = _f(x)
    return "—" if v is None else f"{v:.6g}"


def sign(x: Any) -> str:
    v = _f(x)
    return "" if v is None or v == 0 else ("pos" if v > 0 else "neg")


def dt(x: Any) -> str:
    if not x:
        return "—"
    s = x.isoformat() if hasattr(x, "isoformat") else str(x)
    return s[:16].replace("T", " ")


def _env() -> Environment:
    env = Environment(loader=FileSystemLoader(str(HERE / "templates")), autoescape=select_autoescape(["html"]))
    env.filters.update(money=money, smoney=smoney, pct=pct, pct1=pct1, num=num, price=price, sign=sign, dt=dt,
                       usd4=lambda x: "—" if _f(x) is None else f"${_f(x):.4f}",
                       sci=lambda x: "—" if _f(x) is None else f"{_f(x):+.1e}",
                       slug=lambda s: re.sub(r"[^A-Za-z0-9]+", "-", str(s)).strip("-"))
    return env


def _fig(js: str) -> str:
    """A figure's JSON, safe inside <script type="application/json">."""
    return js.replace("</", "<\\/")


@lru_cache(maxsize=1)
def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


# ---- the app ---------------------------------------------------------------------------------
def create_app(settings: Settings | None = None, reports_dir: str | Path = "reports", *,
               token: str | None = None, refresh_s: int = 10) -> FastAPI:
    """The dashboard app. `settings` default to the environment's; `token` to its dashboard_token."""
    settings = settings or load_settings()
    if token is None and settings.dashboard_token is not None:
        token = settings.dashboard_token.get_secret_value()
    ctx = q.Ctx(settings, Path(reports_dir))
    env = _env()
    app = FastAPI(title="Quorum dashboard", docs_url="/api/docs", redoc_url=None, openapi_url="/api/openapi.json")
    app.add_middleware(GZipMiddleware, minimum_size=2048)  # plotly.js is 4.8 MB, 1.4 MB gzipped
    app.state.ctx = ctx

    def session_value() -> str | None:
        if not token:
            return None
        return hmac.new(token.encode(), b"quorum-dashboard-session", hashlib.sha256).hexdigest()

    def logged_in(request: Request) -> bool:
        sv = session_value()
        c = request.cookies.get(COOKIE)
        return bool(sv and c and hmac.compare_digest(c, sv))

    def authorize(request: Request) -> str:
        """Who may use the controls: a bearer token or the login cookie; 403 when no token is set."""
        if not token:
            raise HTTPException(403, "controls are disabled: start the dashboard with QUORUM_DASHBOARD_TOKEN set")
        auth = request.headers.get("authorization", "")
        if auth:
            scheme, _, given = auth.partition(" ")
            if scheme.lower() != "bearer" or not given:
                raise HTTPException(401, "use Authorization: Bearer <token>", headers={"WWW-Authenticate": "Bearer"})
            if not hmac.compare_digest(given.strip().encode(), token.encode()):
                raise HTTPException(403, "wrong token")
            return "bearer"
        if request.cookies.get(COOKIE):
            if not logged_in(request):
                raise HTTPException(403, "session not valid (the token changed?): log in again")
            if request.headers.get("x-quorum-control") != "1":  # a cross-site form cannot set this header
                raise HTTPException(403, "control requests from the page must come from the dashboard's buttons")
            return "session"
        raise HTTPException(401, "a token is required: log in on /login or send Authorization: Bearer <token>",
                            headers={"WWW-Authenticate": "Bearer"})

    def page(request: Request, template: str, title: str, active: str = "", status: int = 200,
             **kw: Any) -> HTMLResponse:
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        html = env.get_template(template).render(title=title, nav=NAV, active=active, mode=settings.mode,
                                                 logged_in=logged_in(request), refresh_s=refresh_s, here=here, **kw)
        return HTMLResponse(html, status_code=status)

    def message(request: Request, status: int, heading: str, text: str, hint: str = "",
                kind: str = "error") -> HTMLResponse:
        return page(request, "message.html", heading, status=status, heading=heading, message=text, hint=hint,
                    kind=kind)

    def api(request: Request) -> bool:
        return request.url.path.startswith("/api/")

    # ---- errors: one clear message, no traceback --------------------------------------------
    @app.exception_handler(StorageError)
    async def _storage(request: Request, exc: StorageError) -> Response:
        text = str(exc)
        if api(request):
            return JSONResponse({"error": text, "database": "unavailable"}, status_code=503)
        return message(request, 503, "Database unavailable", text,
                       "Check QUORUM_DATABASE_URL and that the database is running; this page retries on reload.")

    @app.exception_handler(SQLAlchemyError)
    async def _sql(request: Request, exc: SQLAlchemyError) -> Response:
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:200] if str(exc) else type(exc).__name__
        log.warning("database error on %s: %s", request.url.path, reason)
        text = f"database error: {reason}"
        if api(request):
            return JSONResponse({"error": text, "database": "unavailable"}, status_code=503)
        return message(request, 503, "Database unavailable", text)

    @app.exception_handler(q.NotFound)
    async def _not_found(request: Request, exc: q.NotFound) -> Response:
        text = str(exc.args[0]) if exc.args else "not found"
        if api(request):
            return JSONResponse({"detail": text}, status_code=404)
        return message(request, 404, "Not found", text)

    @app.exception_handler(AccountBusy)
    async def _busy(request: Request, exc: AccountBusy) -> Response:
        if api(request):  # a cycle or the monitor holds the account: nothing was closed, try again
            return JSONResponse({"error": str(exc)}, status_code=409)
        return message(request, 409, "Account busy", str(exc))

    @app.exception_handler(QuorumError)
    async def _quorum(request: Request, exc: QuorumError) -> Response:
        if api(request):
            return JSONResponse({"error": str(exc)}, status_code=500)
        return message(request, 500, "Cannot show this page", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if api(request) or request.method != "GET":
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers)
        return message(request, exc.status_code, "Not found" if exc.status_code == 404 else "Error", str(exc.detail))

    @app.exception_handler(Exception)
    async def _any(request: Request, exc: Exception) -> Response:
        log.exception("dashboard error on %s", request.url.path)
        text = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        if api(request):
            return JSONResponse({"error": text}, status_code=500)
        return message(request, 500, "Something went wrong", text, "The details are in the dashboard's log.")

    # ---- static ------------------------------------------------------------------------------
    @app.get("/static/plotly.min.js", include_in_schema=False)
    def plotly_js() -> Response:
        return Response(_plotly_js(), media_type="application/javascript",
                        headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in ("htmx.min.js", "app.js", "style.css"):
            raise HTTPException(404, "no such file")
        media = "text/css" if name.endswith(".css") else "application/javascript"
        return FileResponse(HERE / "static" / name, media_type=media)

    # ---- pages -------------------------------------------------------------------------------
    def overview_ctx() -> dict[str, Any]:
        d = q.overview(ctx)
        return {"data": d, "figs": {"equity": _fig(charts.equity(d["curves"]))}}

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def overview_page(request: Request) -> HTMLResponse:
        return page(request, "overview.html", "Overview", "/", **overview_ctx())

    @app.get("/partials/overview", response_class=HTMLResponse, include_in_schema=False)
    def overview_partial(request: Request) -> HTMLResponse:
        return page(request, "overview_live.html", "Overview", **overview_ctx())

    @app.get("/cycles/{cycle_id}", response_class=HTMLResponse, include_in_schema=False)
    def cycle_page(request: Request, cycle_id: str) -> HTMLResponse:
        c = q.cycle_detail(ctx, cycle_id)
        if c is None:
            raise HTTPException(404, f"no cycle {cycle_id!r} in this database")
        return page(request, "cycle.html", f"Cycle {cycle_id}", c=c)

    def board_ctx() -> dict[str, Any]:
        rows = q.leaderboard(ctx)
        curves = q.equity_curves(ctx)
        start = float(settings.paper.starting_balance)
        return {"rows": rows, "figs": {"bars": _fig(charts.account_bars(rows, start)) if rows else "",
                                       "lines": _fig(charts.equity(curves)) if rows else ""}}

    @app.get("/leaderboard", response_class=HTMLResponse, include_in_schema=False)
    def leaderboard_page(request: Request) -> HTMLResponse:
        return page(request, "leaderboard.html", "Leaderboard", "/leaderboard", **board_ctx())

    @app.get("/partials/leaderboard", response_class=HTMLResponse, include_in_schema=False)
    def leaderboard_partial(request: Request) -> HTMLResponse:
        return page(request, "leaderboard_live.html", "Leaderboard", **board_ctx())

    @app.get("/trades", response_class=HTMLResponse, include_in_schema=False)
    def trades_page(request: Request, account: str | None = None) -> HTMLResponse:
        """The account's closed trades, or (``?account=paper:shadow:<member>``) a shadow account's."""
        acct = q.account_key(ctx, account)
        return page(request, "trades.html", "Trades", "/trades", rows=q.trades(ctx, acct), account=acct)

    @app.get("/trades/{position_id}", response_class=HTMLResponse, include_in_schema=False)
    def trade_page(request: Request, position_id: str) -> HTMLResponse:
        t = q.trade_detail(ctx, position_id)
        if t is None:
            raise HTTPException(404, f"no position {position_id!r} in this database")
        fig = _fig(charts.trade_chart(t["bars"], t["fills"], t["position"])) if t["bars"] else ""
        return page(request, "trade.html", f"Trade {position_id}", "/trades", t=t, figs={"price": fig})

    @app.get("/backtests", response_class=HTMLResponse, include_in_schema=False)
    def backtests_page(request: Request) -> HTMLResponse:
        return page(request, "backtests.html", "Backtests", "/backtests", rows=q.backtests(ctx),
                    reports_dir=str(ctx.reports_dir))

    @app.get("/backtests/{name}", include_in_schema=False)
    def backtest_report(name: str) -> Response:
        stem, suffix = (name[:-5], ".json") if name.endswith(".json") else (name, ".html")
        path = q.backtest_file(ctx, stem, suffix)
        if path is None:
            raise HTTPException(404, f"no backtest report {name!r} in {ctx.reports_dir}")
        return FileResponse(path, media_type="application/json" if suffix == ".json" else "text/html")

    # ---- login -------------------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request) -> HTMLResponse:
        return page(request, "login.html", "Log in", enabled=bool(token))

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        given = (form.get("token") or [""])[0]
        if not token:
            return page(request, "login.html", "Log in", status=403, enabled=False,
                        error="controls are disabled: no QUORUM_DASHBOARD_TOKEN is set")
        if not given or not hmac.compare_digest(given.encode(), token.encode()):
            return page(request, "login.html", "Log in", status=403, enabled=True, error="wrong token")
        resp = RedirectResponse("/", status_code=303)
        resp.set_cookie(COOKIE, session_value() or "", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")
        return resp

    @app.post("/logout", include_in_schema=False)
    def logout() -> Response:
        resp = RedirectResponse("/", status_code=303)
        resp.delete_cookie(COOKIE)
        return resp

    # ---- JSON API ----------------------------------------------------------------------------
    def js(obj: Any, status: int = 200) -> JSONResponse:
        return JSONResponse(jsonable(obj), status_code=status)

    @app.get("/api/health")
    def api_health() -> JSONResponse:
        return js(q.health(ctx))

    @app.get("/api/positions")
    def api_positions() -> JSONResponse:
        return js(q.positions(ctx))

    @app.get("/api/trades")
    def api_trades(account: str | None = None) -> JSONResponse:
        return js(q.trades(ctx, q.account_key(ctx, account)))

    @app.get("/api/trades/{position_id}")
    def api_trade(position_id: str) -> JSONResponse:
        t = q.trade_detail(ctx, position_id)
        if t is None:
            raise HTTPException(404, f"no position {position_id!r}")
        return js(t)

    @app.get("/api/cycles")
    def api_cycles(limit: int = 50) -> JSONResponse:
        return js(q.recent_cycles(ctx, max(1, min(limit, 1000))))

    @app.get("/api/cycles/{cycle_id}")
    def api_cycle(cycle_id: str) -> JSONResponse:
        c = q.cycle_detail(ctx, cycle_id)
        if c is None:
            raise HTTPException(404, f"no cycle {cycle_id!r}")
        return js(c)

    @app.get("/api/leaderboard")
    def api_leaderboard() -> JSONResponse:
        return js(q.leaderboard(ctx))

    @app.get("/api/performance")
    def api_performance() -> JSONResponse:
        return js(q.performance(ctx))

    @app.get("/api/backtests")
    def api_backtests() -> JSONResponse:
        return js(q.backtests(ctx))

    @app.get("/api/export")
    def api_export(format: str = "json") -> Response:  # noqa: A002 - the query parameter's name
        if format not in EXPORT_TYPES:
            raise HTTPException(400, f"format {format!r}: expected json, csv, tax or audit")
        body = q.export(ctx, format)
        ext = "json" if format == "json" else "csv"
        return PlainTextResponse(body, media_type=EXPORT_TYPES[format], headers={
            "Content-Disposition": f'attachment; filename="quorum-{format}.{ext}"'})

    async def reason_of(request: Request) -> str:
        raw = await request.body()
        reason = ""
        if raw:
            try:
                reason = str((json.loads(raw) or {}).get("reason") or "")
            except (ValueError, AttributeError):
                reason = (parse_qs(raw.decode("utf-8", "replace")).get("reason") or [""])[0]
        return reason.strip()[:200] or "dashboard operator"

    @app.post("/api/halt")
    async def api_halt(request: Request) -> JSONResponse:
        who = authorize(request)
        reason = await reason_of(request)
        res = q.halt(ctx, reason)
        log.warning("halt set from the dashboard (%s): %s", who, reason)
        return js({**res, "message": f"halted: no new entries until resume ({reason})"})

    @app.post("/api/resume")
    async def api_resume(request: Request) -> JSONResponse:
        who = authorize(request)
        res = q.resume(ctx)
        log.warning("resumed from the dashboard (%s)", who)
        return js({**res, "message": f"resumed: {res['released']} halt(s) released; breakers re-arm from now"})

    @app.post("/api/close-all")
    async def api_close_all(request: Request) -> JSONResponse:
        who = authorize(request)
        reason = await reason_of(request)
        q.halt(ctx, reason)  # as `quorum halt --close-all`: no new entries, then everything closed
        res = await run_in_threadpool(q.close_all, ctx, reason)  # may wait for the account's lock
        log.warning("close-all from the dashboard (%s): %s", who, res["closed"])
        return js({**res, "halted": True,
                   "message": f"halted and closed {len(res['closed'])} position(s): {', '.join(res['closed']) or 'none open'}"})

    return app


def serve(host: str = "127.0.0.1", port: int = 8000, reports_dir: str = "reports") -> None:
    """Run the dashboard with uvicorn (blocking)."""
    import uvicorn

    app = create_app(reports_dir=reports_dir)
    uvicorn.run(app, host=host, port=port, log_level="info")
