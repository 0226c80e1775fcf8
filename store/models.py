"""Core tables: cycles and everything a cycle decides, the paper account, positions and events."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from store.base import Base, UTCDateTime, utcnow

MONEY = Numeric(28, 10)
# an account key: "paper", "live", or a member's shadow account "paper:shadow:<member>" (pipeline/shadow.py)
ACCOUNT_KEY = String(64)


class CycleRow(Base):
    __tablename__ = "cycles"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    as_of: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="running")
    mode: Mapped[str] = mapped_column(String(8))
    source: Mapped[str] = mapped_column(String(32))
    flow_run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    panel_status: Mapped[str] = mapped_column(Text, default="")
    llm_cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    llm_tokens: Mapped[int] = mapped_column(Integer, default=0)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class CandidateRow(Base):
    __tablename__ = "candidates"
    __table_args__ = (UniqueConstraint("cycle_id", "symbol"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cycle_id: Mapped[str] = mapped_column(ForeignKey("cycles.id"), index=True)
    symbol: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(24))
    reason: Mapped[str] = mapped_column(Text, default="")
    volume_24h_quote: Mapped[float] = mapped_column(Float, default=0.0)
    spread_pct: Mapped[float] = mapped_column(Float, default=0.0)


class ScoreRow(Base):
    __tablename__ = "scores"
    __table_args__ = (UniqueConstraint("cycle_id", "symbol"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cycle_id: Mapped[str] = mapped_column(ForeignKey("cycles.id"), index=True)
    symbol: Mapped[str] = mapped_column(String(40))
    final: Mapped[float] = mapped_column(Float)
    signal: Mapped[str] = mapped_column(String(8))
    trend: Mapped[str] = mapped_column(String(16))
    vol_state: Mapped[str] = mapped_column(String(16))
    vol_ratio: Mapped[float | None] = mapped_column(Float, nullable=True)
    atr_pct: Mapped[float | None] = mapped_column(Float, nullable=True)
    daily_veto: Mapped[bool] = mapped_column(Boolean, default=False)
    components: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    timeframes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)
    news: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class VoteRow(Base):
    __tablename__ = "votes"
    __table_args__ = (UniqueConstraint("cycle_id", "symbol", "member_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cycle_id: Mapped[str] = mapped_column(ForeignKey("cycles.id"), index=True)
    symbol: Mapped[str] = mapped_column(String(40))
    member_id: Mapped[str] = mapped_column(String(40), index=True)
    provider: Mapped[str] = mapped_column(String(24), default="")
    model: Mapped[str] = mapped_column(String(80), default="")
    prompt_version: Mapped[str] = mapped_column(String(64), default="")
    action: Mapped[str | None] = mapped_column(String(8), nullable=True)
    confidence: Mapped[float] = mapped_column(Float, default=0.0)
    rationale: Mapped[str] = mapped_column(Text, default="")
    key_factors: Mapped[list[str]] = mapped_column(JSON, default=list)
    abstain_reason: Mapped[str | None] = mapped_column(String(40), nullable=True)
    latency_s: Mapped[float] = mapped_column(Float, default=0.0)
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    cached: Mapped[bool] = mapped_column(Boolean, default=False)
    as_of: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    price_at_vote: Mapped[float | None] = mapped_column(Float, nullable=True)


class DecisionRow(Base):
    __tablename__ = "decisions"
    __table_args__ = (UniqueConstraint("cycle_id", "symbol"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cycle_id: Mapped[str] = mapped_column(ForeignKey("cycles.id"), index=True)
    symbol: Mapped[str] = mapped_column(String(40))
    action: Mapped[str] = mapped_column(String(8))
    confidence: Mapped[float] = mapped_column(Float)
    math_score: Mapped[float] = mapped_column(Float)
    combined_score: Mapped[float] = mapped_column(Float)
    votes_valid: Mapped[int] = mapped_column(Integer)
    votes_total: Mapped[int] = mapped_column(Integer)
    tally: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    dissent: Mapped[list[str]] = mapped_column(JSON, default=list)
    fallback_to_math: Mapped[bool] = mapped_column(Boolean, default=False)
    reason: Mapped[str] = mapped_column(Text, default="")


class RiskVerdictRow(Base):
    __tablename__ = "risk_verdicts"
    __table_args__ = (UniqueConstraint("cycle_id", "symbol"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cycle_id: Mapped[str] = mapped_column(ForeignKey("cycles.id"), index=True)
    symbol: Mapped[str] = mapped_column(String(40))
    approved: Mapped[bool] = mapped_column(Boolean)
    profile: Mapped[str] = mapped_column(String(24))
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class OrderRow(Base):
    """client_order_id is deterministic (cycle key + symbol + intent): a rerun never doubles an order."""

    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_order_id: Mapped[str] = mapped_column(String(160), unique=True)
    cycle_id: Mapped[str | None] = mapped_column(String(64), nullable=True, index=True)
    position_id: Mapped[str] = mapped_column(String(64), index=True)
    symbol: Mapped[str] = mapped_column(String(40))
    side: Mapped[str] = mapped_column(String(8))
    kind: Mapped[str] = mapped_column(String(8))  # open | close
    qty: Mapped[Decimal] = mapped_column(MONEY)
    status: Mapped[str] = mapped_column(String(16), default="filled")
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    mode: Mapped[str] = mapped_column(ACCOUNT_KEY, default="paper")


class FillRow(Base):
    __tablename__ = "fills"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    symbol: Mapped[str] = mapped_column(String(40))
    qty: Mapped[Decimal] = mapped_column(MONEY)
    price: Mapped[Decimal] = mapped_column(MONEY)
    fee: Mapped[Decimal] = mapped_column(MONEY)
    ts: Mapped[datetime] = mapped_column(UTCDateTime)


class PositionRow(Base):
    __tablename__ = "positions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(40), index=True)
    side: Mapped[str] = mapped_column(String(8))
    entry: Mapped[float] = mapped_column(Float)
    qty_initial: Mapped[Decimal] = mapped_column(MONEY)
    qty_open: Mapped[Decimal] = mapped_column(MONEY)
    stop: Mapped[float] = mapped_column(Float)
    initial_stop: Mapped[float] = mapped_column(Float)
    tp1: Mapped[float] = mapped_column(Float)
    tp2: Mapped[float] = mapped_column(Float)
    leverage: Mapped[int] = mapped_column(Integer)
    margin: Mapped[float] = mapped_column(Float)
    liquidation_price: Mapped[float] = mapped_column(Float)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime)
    best_price: Mapped[float] = mapped_column(Float)
    phase: Mapped[str] = mapped_column(String(16), default="initial")
    tp1_done: Mapped[bool] = mapped_column(Boolean, default=False)
    realised_pnl: Mapped[float] = mapped_column(Float, default=0.0)
    fees_paid: Mapped[float] = mapped_column(Float, default=0.0)
    funding_paid: Mapped[float] = mapped_column(Float, default=0.0)
    last_funding_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    checked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    exit_reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    cycle_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    mode: Mapped[str] = mapped_column(ACCOUNT_KEY, default="paper")
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class PositionEventRow(Base):
    __tablename__ = "position_events"
    __table_args__ = (UniqueConstraint("position_id", "kind", "ts"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    position_id: Mapped[str] = mapped_column(ForeignKey("positions.id"), index=True)
    symbol: Mapped[str] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(24))
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
    price: Mapped[float] = mapped_column(Float)
    qty: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    pnl: Mapped[float] = mapped_column(Float, default=0.0)
    r_multiple: Mapped[float] = mapped_column(Float, default=0.0)
    reason: Mapped[str] = mapped_column(Text, default="")
    old_stop: Mapped[float | None] = mapped_column(Float, nullable=True)
    new_stop: Mapped[float | None] = mapped_column(Float, nullable=True)


class AccountRow(Base):
    """The paper (or live mirror) account: one row per mode, plus one per member shadow account
    (key `<mode>:shadow:<member>`)."""

    __tablename__ = "accounts"
    mode: Mapped[str] = mapped_column(ACCOUNT_KEY, primary_key=True)
    starting_balance: Mapped[Decimal] = mapped_column(MONEY)
    balance: Mapped[Decimal] = mapped_column(MONEY)
    realised_pnl: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    fees_paid: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    funding_paid: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    clock: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class EquitySnapshotRow(Base):
    __tablename__ = "equity_snapshots"
    __table_args__ = (UniqueConstraint("mode", "ts"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    mode: Mapped[str] = mapped_column(ACCOUNT_KEY)
    ts: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    equity: Mapped[float] = mapped_column(Float)
    balance: Mapped[float] = mapped_column(Float)
    unrealised: Mapped[float] = mapped_column(Float, default=0.0)
    open_positions: Mapped[int] = mapped_column(Integer, default=0)


class HaltRow(Base):
    """Manual or breaker halts. Active while `released_at` is null and `until` is null or future."""

    __tablename__ = "halts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    mode: Mapped[str] = mapped_column(ACCOUNT_KEY)
    reason: Mapped[str] = mapped_column(Text)
    set_by: Mapped[str] = mapped_column(String(16))  # manual | breaker
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class BrokerOrderRow(Base):
    """The live broker's order-intent journal: one row per order Quorum means to place, written BEFORE it is
    sent. `client_id` is deterministic (account, decision time, symbol, intent, sequence), so a restart finds
    the row again and looks the order up by it instead of sending a second one.

    state: intent (committed, outcome of sending unknown to this row) → open (resting on the exchange) |
    filled | cancelled | rejected | unknown (sent, answer lost: looked up before anything is resent)."""

    __tablename__ = "broker_orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    account: Mapped[str] = mapped_column(String(32), index=True)
    exchange: Mapped[str] = mapped_column(String(24))
    position_id: Mapped[str] = mapped_column(String(64), index=True)
    symbol: Mapped[str] = mapped_column(String(40))
    intent: Mapped[str] = mapped_column(String(8))  # entry | stop | tp1 | tp2 | close
    seq: Mapped[int] = mapped_column(Integer, default=0)
    side: Mapped[str] = mapped_column(String(4))  # buy | sell
    qty: Mapped[Decimal] = mapped_column(MONEY)
    trigger_price: Mapped[Decimal | None] = mapped_column(MONEY, nullable=True)
    reduce_only: Mapped[bool] = mapped_column(Boolean, default=False)
    state: Mapped[str] = mapped_column(String(12), default="intent", index=True)
    exchange_order_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    filled: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    avg_price: Mapped[Decimal | None] = mapped_column(MONEY, nullable=True)
    fee: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    decision_time: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str] = mapped_column(Text, default="")
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    filled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class BrokerFillRow(Base):
    """An exchange trade, attached to the journal order whose exchange id it carries (never by symbol)."""

    __tablename__ = "broker_fills"
    __table_args__ = (UniqueConstraint("account", "trade_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account: Mapped[str] = mapped_column(String(32))
    trade_id: Mapped[str] = mapped_column(String(64))
    client_id: Mapped[str] = mapped_column(ForeignKey("broker_orders.client_id"), index=True)
    exchange_order_id: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(40))
    side: Mapped[str] = mapped_column(String(4))
    qty: Mapped[Decimal] = mapped_column(MONEY)
    price: Mapped[Decimal] = mapped_column(MONEY)
    fee: Mapped[Decimal] = mapped_column(MONEY)
    ts: Mapped[datetime] = mapped_column(UTCDateTime)
