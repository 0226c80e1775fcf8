"""The order-intent journal of the live broker (table `broker_orders`, fills in `broker_fills`).

Every function takes a Session and never commits: the broker commits each step in its own short
transaction (`store.db.transaction`), so an intent is durable BEFORE its order is sent, and the
exchange's answer is durable before anything else happens.

States: intent → open | filled | cancelled | rejected | unknown. `intent` and `unknown` rows are
"in doubt": the order may or may not be on the exchange; the broker looks them up by client id
before it sends anything again.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from store.models import BrokerFillRow, BrokerOrderRow

IN_DOUBT = ("intent", "unknown")
FINAL = ("filled", "cancelled", "rejected")
STATES = ("intent", "open", "filled", "cancelled", "rejected", "unknown")


def get(s: Session, client_id: str) -> BrokerOrderRow | None:
    return s.scalar(select(BrokerOrderRow).where(BrokerOrderRow.client_id == client_id))


def record_intent(s: Session, *, client_id: str, account: str, exchange: str, position_id: str, symbol: str,
                  intent: str, seq: int, side: str, qty: Decimal, decision_time: datetime,
                  trigger_price: Decimal | None = None, reduce_only: bool = False,
                  meta: dict[str, Any] | None = None) -> tuple[BrokerOrderRow, bool]:
    """The row for `client_id`, created in state `intent` when new. Returns (row, created)."""
    row = get(s, client_id)
    if row is not None:
        return row, False
    now = datetime.now(UTC)
    row = BrokerOrderRow(client_id=client_id, account=account, exchange=exchange, position_id=position_id,
                         symbol=symbol, intent=intent, seq=seq, side=side, qty=qty, trigger_price=trigger_price,
                         reduce_only=reduce_only, state="intent", decision_time=decision_time, attempts=0,
                         last_error="", meta=dict(meta or {}), created_at=now, updated_at=now,
                         filled=Decimal(0), fee=Decimal(0))
    s.add(row)
    s.flush()
    return row, True


def update(s: Session, client_id: str, **fields: Any) -> BrokerOrderRow:
    row = get(s, client_id)
    if row is None:
        raise KeyError(f"no journal row {client_id!r}")
    if "state" in fields and fields["state"] not in STATES:
        raise ValueError(f"unknown order state {fields['state']!r}")
    for k, v in fields.items():
        setattr(row, k, v)
    row.updated_at = datetime.now(UTC)
    s.flush()
    return row


def for_position(s: Session, account: str, position_id: str) -> list[BrokerOrderRow]:
    q = select(BrokerOrderRow).where(BrokerOrderRow.account == account, BrokerOrderRow.position_id == position_id)
    return list(s.scalars(q.order_by(BrokerOrderRow.id)))


def all_orders(s: Session, account: str) -> list[BrokerOrderRow]:
    return list(s.scalars(select(BrokerOrderRow).where(BrokerOrderRow.account == account)
                          .order_by(BrokerOrderRow.id)))


def in_doubt(s: Session, account: str) -> list[BrokerOrderRow]:
    q = select(BrokerOrderRow).where(BrokerOrderRow.account == account, BrokerOrderRow.state.in_(IN_DOUBT))
    return list(s.scalars(q.order_by(BrokerOrderRow.id)))


def next_seq(s: Session, account: str, position_id: str, intent: str) -> int:
    q = select(func.max(BrokerOrderRow.seq)).where(BrokerOrderRow.account == account,
                                                   BrokerOrderRow.position_id == position_id,
                                                   BrokerOrderRow.intent == intent)
    cur = s.scalar(q)
    return 0 if cur is None else int(cur) + 1


def add_fill(s: Session, *, account: str, trade_id: str, client_id: str, exchange_order_id: str, symbol: str,
             side: str, qty: Decimal, price: Decimal, fee: Decimal, ts: datetime) -> bool:
    """Store one exchange trade once (by trade id). Returns True when it was new."""
    exists = s.scalar(select(BrokerFillRow.id).where(BrokerFillRow.account == account,
                                                     BrokerFillRow.trade_id == trade_id))
    if exists is not None:
        return False
    s.add(BrokerFillRow(account=account, trade_id=trade_id, client_id=client_id,
                        exchange_order_id=exchange_order_id, symbol=symbol, side=side, qty=qty, price=price,
                        fee=fee, ts=ts))
    s.flush()
    return True


def fills_of(s: Session, account: str, client_ids: Sequence[str] | None = None) -> list[BrokerFillRow]:
    q = select(BrokerFillRow).where(BrokerFillRow.account == account)
    if client_ids is not None:
        q = q.where(BrokerFillRow.client_id.in_(list(client_ids)))
    return list(s.scalars(q.order_by(BrokerFillRow.ts, BrokerFillRow.id)))
