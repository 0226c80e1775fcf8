"""The broker a run talks to (exchange.broker.Broker), built once per run with exchange.factory.build_broker,
and what the pipeline does with a reconciliation's findings.

Nothing here knows which broker it holds (exchange/factory.py builds it: the paper broker is a thin view over
the in-memory paper account, a new one over each account object; the live broker is kept for the process).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.orm import Session

from core.settings import Settings
from core.types import PositionEvent
from exchange.base import MarketDataSource
from exchange.broker import Broker, Finding
from exchange.factory import build_broker
from exchange.paper import PaperAccount
from pipeline.positions import marks


def broker_for(factory: Any, source: MarketDataSource, settings: Settings, now: datetime,
               acct: PaperAccount | None, client: Any = None) -> Broker:
    """The configured broker (the paper one over `acct`, filling at the first price after `now`)."""
    return build_broker(settings, factory, paper_account=acct, source=source, now=lambda: now, client=client,
                        marks=lambda sym: marks(source, [sym], now).get(sym))


def use_client(factory: Any, settings: Settings, client: Any) -> None:
    """Tests and tools: make this process's live broker use `client` (a ccxt client) for `factory`."""
    from exchange.factory import use_client as use

    use(settings, factory, client)


def findings_events(findings: Sequence[Finding], now: datetime, known: set[str]) -> list[PositionEvent]:
    """A position event (kind `reconcile`) per finding about a position in the positions table."""
    return [PositionEvent(f.position_id, f.symbol, "reconcile", now + timedelta(microseconds=i),
                          float(f.price) if f.price is not None else 0.0, Decimal(f.qty or 0),
                          reason=f"{f.kind}: {f.detail} [{f.action}]"[:500])
            for i, f in enumerate(findings) if f.position_id in known]


def store_findings(s: Session, findings: Sequence[Finding], now: datetime) -> list[str]:
    """Store each finding as a position event and queue its channel post (an exit the exchange filled is
    posted as that exit, by pipeline.monitor.record_exchange_exits); returns the finding lines."""
    from exchange.reconcile import finding_text
    from store import outbox, repo

    if not findings:
        return []
    from store.models import PositionRow

    ids = {f.position_id for f in findings if f.position_id}
    known = {pid for pid in ids if s.get(PositionRow, pid) is not None}
    repo.add_events(s, findings_events(findings, now, known))
    lines = []
    for i, f in enumerate(findings):
        text = finding_text(f)
        lines.append(text)
        if f.event is not None:  # an exit the exchange filled: its post is the exit's own (record_exchange_exits)
            continue
        outbox.enqueue(s, f"reconcile:{now:%Y%m%dT%H%M%S}:{f.kind}:{f.client_id or f.position_id or f.symbol}:{i}",
                       "reconcile", text, symbol=f.symbol, position_id=f.position_id)
    return lines
