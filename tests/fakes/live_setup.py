"""Helpers for the live-broker tests: a real ccxt client pointed at FakePrivateExchange, a LiveBroker over a
SQLite journal, a standard plan, and the 'database equals exchange' comparison."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import ccxt
from sqlalchemy.orm import sessionmaker

from core.types import Side, TradePlan
from exchange.capabilities import capabilities_for
from exchange.live_broker import LiveBroker, point_api_at
from store.db import open_database
from tests.fakes.exchange_private import FakePrivateExchange

EXCHANGES = ("bybit", "binanceusdm")
SYMBOL = "BTC/USDT:USDT"
MARKET = "BTCUSDT"
DECISION = datetime(2025, 5, 23, 4, tzinfo=UTC)
# the create-order path of each exchange for entries and for protective orders
ENTRY_PATH = {"bybit": "/v5/order/create", "binanceusdm": "/fapi/v1/order"}
PROTECT_PATH = {"bybit": "/v5/order/create", "binanceusdm": "/fapi/v1/algoOrder"}
CANCEL_PATH = {"bybit": "/v5/order/cancel", "binanceusdm": "/fapi/v1/algoOrder"}
# the account settings a broker writes before an entry (leverage, isolated margin)
SETTING_PATHS = {"bybit": ("/v5/position/set-leverage", "/v5/position/switch-isolated"),
                 "binanceusdm": ("/fapi/v1/leverage", "/fapi/v1/marginType")}


def order_writes(fx: FakePrivateExchange) -> list[str]:
    """The order writes the exchange received, in order: "create" or "cancel" per request (Binance creates and
    cancels algo orders on one path, by method)."""
    creates = {ENTRY_PATH[fx.dialect], PROTECT_PATH[fx.dialect]}
    out = []
    for method, path, _ in fx.requests:
        if path == CANCEL_PATH[fx.dialect] and (method == "DELETE" or path not in creates):
            out.append("cancel")
        elif path in creates and method == "POST":
            out.append("create")
    return out


_CLIENTS: dict[tuple[str, str, int], Any] = {}
_TEMPLATE: list[Path] = []


def client_for(fx: FakePrivateExchange, *, secret: str | None = None, timeout_ms: int = 1000,
               fresh: bool = False) -> Any:
    """A real ccxt client pointed at `fx`. Building a ccxt exchange object takes ~0.5-1.5 s, so one per
    (exchange, secret, timeout) is kept for the session and re-pointed at each test's server (the fakes all
    list the same markets; the broker keeps no state in the client)."""
    key = (fx.dialect, secret or fx.secret, timeout_ms)
    c = None if fresh else _CLIENTS.get(key)
    if c is None:
        c = getattr(ccxt, fx.dialect)({"apiKey": fx.api_key, "secret": secret or fx.secret, "timeout": timeout_ms,
                                       "enableRateLimit": False,
                                       "options": dict(capabilities_for(fx.dialect).options)})
        if not fresh:
            _CLIENTS[key] = c
            c._quorum_api = dict(c.urls["api"])
    if hasattr(c, "_quorum_api"):
        c.urls["api"] = dict(c._quorum_api)
    point_api_at(c, fx.url)
    return c


def factory_for(path: Path) -> sessionmaker:
    """A session factory on a SQLite file, copied from one migrated template per session (Alembic takes
    ~1 s per new database on this machine)."""
    import shutil
    import tempfile

    if not path.exists():
        if not _TEMPLATE:
            tpl = Path(tempfile.mkdtemp(prefix="quorum-live-tpl-")) / "template.db"
            open_database(f"sqlite:///{tpl}").dispose()
            _TEMPLATE.append(tpl)
        shutil.copyfile(_TEMPLATE[0], path)
    return sessionmaker(open_database(f"sqlite:///{path}", run_migrations=False), expire_on_commit=False,
                        future=True)


def broker_for(fx: FakePrivateExchange, tmp_path: Path, **kw: Any) -> LiveBroker:
    kw.setdefault("read_delay", 0.0)
    kw.setdefault("sleep", lambda s: None)
    return LiveBroker(client_for(fx), factory_for(tmp_path / "live.db"), **kw)


def plan(side: Side = Side.LONG, qty: str = "0.0123", symbol: str = SYMBOL) -> TradePlan:
    if side is Side.LONG:
        return TradePlan(symbol, side, 40000.0, 39000.0, 41500.0, 42500.0, 5, Decimal(qty), 492.0, 98.4, 12.3,
                         0.123, 32200.0, 2.5, reason="test long")
    return TradePlan(symbol, side, 40000.0, 41000.0, 38500.0, 37500.0, 5, Decimal(qty), 492.0, 98.4, 12.3,
                     0.123, 47800.0, 2.5, reason="test short")


def exchange_book(fx: FakePrivateExchange) -> dict[str, tuple[str, Decimal, Decimal | None, Decimal]]:
    """client id → (state, qty, trigger, filled) of every order the exchange holds."""
    state = {"New": "open", "Untriggered": "open", "Filled": "filled", "Cancelled": "cancelled",
             "Deactivated": "cancelled", "Rejected": "rejected"}
    return {o.client_id: (state[o.status], o.qty, o.trigger, o.filled) for o in fx.orders_of()}


def journal_book(broker: LiveBroker) -> dict[str, tuple[str, Decimal, Decimal | None, Decimal]]:
    def n(x: Decimal | None) -> Decimal | None:
        return None if x is None else x.normalize()

    rows = broker.journal()
    assert not [o for o in rows if o.state in ("intent", "unknown")], "orders still in doubt"
    # rows that never reached the exchange (cancelled before sending, rejected) have no exchange id
    return {o.client_id: (o.state, o.qty.normalize(), n(o.trigger_price), o.filled.normalize())
            for o in rows if o.exchange_id is not None}


def normalised(book: dict) -> dict:
    return {k: (s, q.normalize(), None if t is None else t.normalize(), f.normalize())
            for k, (s, q, t, f) in book.items()}


def assert_db_equals_exchange(fx: FakePrivateExchange, broker: LiveBroker) -> None:
    ex, db = normalised(exchange_book(fx)), journal_book(broker)
    assert db == ex, f"journal != exchange\njournal: {db}\nexchange: {ex}"
    pos = fx.position(MARKET).size
    mine = sum((p.qty_open * p.side.sign for p in broker.positions() if p.symbol == SYMBOL), Decimal(0))
    assert mine == pos, f"database position {mine} != exchange {pos}"


def assert_reported_until_recorded(b: LiveBroker, kind: str) -> None:
    """A protective fill is reported by every reconciliation until the caller says, in its own transaction, that
    it stored the exit (Broker.exits_recorded); then never again. A rolled-back transaction marks nothing."""
    import pytest

    from store.db import transaction

    again = b.reconcile()
    assert [(f.kind, f.event.kind) for f in again] == [("protective_filled", kind)]
    with pytest.raises(RuntimeError), transaction(b.factory) as s:
        b.exits_recorded(s, again)
        raise RuntimeError("the caller's transaction fails before its commit")
    assert [f.client_id for f in b.reconcile()] == [again[0].client_id]
    with transaction(b.factory) as s:
        b.exits_recorded(s, again)
    assert b.reconcile() == []


def live_env(fx: FakePrivateExchange, db: Path, **extra: str) -> dict[str, str]:
    """The environment of a confirmed live account on the fake exchange `fx`, its database at `db`."""
    return {"QUORUM_MODE": "live", "QUORUM_LIVE_TRADING_CONFIRMED": "true", "QUORUM_EXCHANGE": fx.dialect,
            "QUORUM_EXCHANGE_API_KEY": fx.api_key, "QUORUM_EXCHANGE_SECRET": fx.secret,
            "QUORUM_EXCHANGE_API_BASE": fx.url, "QUORUM_DATABASE_URL": f"sqlite:///{db}", **extra}
