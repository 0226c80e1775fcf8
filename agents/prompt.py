"""The panel's prompt: the point-in-time payload of every candidate (prices, score breakdown, news,
open positions, risk limits), the versioned decision messages and the repair message."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from hashlib import sha256
from typing import Any

from agents.hunter import load_prompt
from agents.llm.base import Message
from core.settings import PanelMember
from core.types import MarketSnapshot, NewsReport, Score

DECISION_PROMPT = "decision_v1"
# --------------------------------------------------------------------------- payload


def _r(x: Any, sig: int = 6) -> Any:
    """Floats rounded to `sig` significant digits (stable prompts, fewer tokens); None/NaN -> None."""
    if x is None:
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return x
    if not math.isfinite(f):
        return None
    return float(f"{f:.{sig}g}")


def _changes(snapshot: MarketSnapshot) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    spans = {"1h": (("change_1h_pct", 1), ("change_24h_pct", 24)),
             "4h": (("change_3d_pct", 18),),
             "1d": (("change_7d_pct", 7), ("change_30d_pct", 30))}
    for tf, items in spans.items():
        df = snapshot.candles.get(tf) if snapshot.candles else None
        if df is None or len(df) == 0 or "close" not in df:
            continue
        closes = df["close"].to_numpy()
        for name, n in items:
            if len(closes) > n and closes[-1 - n] > 0:
                out[name] = _r((closes[-1] / closes[-1 - n] - 1.0) * 100.0, 4)
    return out


def candidate_payload(snapshot: MarketSnapshot, score: Score | None, news: NewsReport | None) -> dict[str, Any]:
    """One candidate as plain JSON-able data for the decision prompt.

    {"symbol", "market": {last, bid, ask, spread_pct, volume_24h_usd, funding_rate_8h, next_funding_time,
     open_interest, change_*_pct}, "math": {final, signal, trend, vol_state, vol_ratio, atr_pct,
     daily_veto, flags, components, weights, timeframes: {tf: {score, trend, rsi, atr_pct, components}}}
     | null, "news": {available, score, critical_negative, note, events: [{date, headline, impact,
     critical, reason, source}]} | null}
    """
    market: dict[str, Any] = {
        "last": _r(snapshot.last),
        "bid": _r(snapshot.bid),
        "ask": _r(snapshot.ask),
        "spread_pct": _r(snapshot.spread_pct, 4),
        "volume_24h_usd": _r(snapshot.volume_24h_quote, 4),
        "funding_rate_8h": _r(snapshot.funding_rate, 4),
        "next_funding_time": snapshot.next_funding_time.isoformat() if snapshot.next_funding_time else None,
        "open_interest": _r(snapshot.open_interest, 4),
    }
    market.update(_changes(snapshot))
    math_part: dict[str, Any] | None = None
    if score is not None:
        math_part = {
            "final": _r(score.final, 4),
            "signal": score.signal.value,
            "trend": score.trend.value,
            "vol_state": score.vol_state.value,
            "vol_ratio": _r(score.vol_ratio, 4),
            "atr_pct": _r(score.atr_pct, 4),
            "daily_veto": bool(score.daily_veto),
            "flags": list(score.flags),
            "components": {k: _r(v, 4) for k, v in sorted(score.components.items())},
            "weights": {k: _r(v, 4) for k, v in sorted(score.weights.items())},
            "timeframes": {
                tf: {"score": _r(t.score, 4), "trend": t.trend.value, "rsi": _r(t.rsi, 4),
                     "atr_pct": _r(t.atr_pct, 4),
                     "components": {k: _r(v, 4) for k, v in sorted(t.components.items())}}
                for tf, t in sorted(score.timeframes.items())
            },
        }
    news_part: dict[str, Any] | None = None
    if news is not None:
        news_part = {
            "available": news.available,
            "score": _r(news.score, 4),
            "critical_negative": news.critical_negative,
            "note": news.note,
            "events": [
                {"date": e.date.isoformat(), "headline": e.headline, "impact": e.impact,
                 "critical": e.critical, "reason": e.reason, "source": e.source}
                for e in news.events[:10]
            ],
        }
    return {"symbol": snapshot.symbol, "market": market, "math": math_part, "news": news_part}


def _position_dict(p: Any) -> dict[str, Any]:
    if isinstance(p, Mapping):
        return dict(p)
    return {
        "symbol": p.symbol,
        "side": getattr(p.side, "value", str(p.side)),
        "entry": _r(p.entry),
        "stop": _r(p.stop),
        "tp1": _r(p.tp1),
        "tp2": _r(p.tp2),
        "leverage": p.leverage,
        "qty_open": str(p.qty_open),
        "opened_at": p.opened_at.isoformat(),
        "phase": p.phase,
    }


def payload_from_candidates(
    candidates: Iterable[Mapping[str, Any]],
    *,
    as_of: datetime,
    open_positions: Iterable[Any] = (),
    risk_limits: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole decision input: {"as_of", "candidates": [candidate_payload...], "open_positions",
    "risk_limits"}. Positions may be core.types.Position or dicts."""
    return {
        "as_of": as_of.isoformat(),
        "candidates": [dict(c) for c in candidates],
        "open_positions": [_position_dict(p) for p in open_positions],
        "risk_limits": dict(risk_limits or {}),
    }


def risk_limits_of(settings: Any) -> dict[str, Any]:
    """The limits the risk manager enforces, as shown to the models (from settings' risk profile)."""
    out: dict[str, Any] = {
        "risk_profile": getattr(settings, "risk_profile", "default"),
        "min_volume_usd": getattr(settings, "min_volume_usd", None),
        "max_spread_pct": getattr(settings, "max_spread_pct", None),
    }
    try:
        from risk.profiles import get_profile

        prof = get_profile(out["risk_profile"])
    except Exception:  # noqa: BLE001 - limits are context for the models, never required
        return out
    for name in ("risk_per_trade_pct", "max_leverage", "stop_min_pct", "stop_max_pct", "tp1_r", "tp2_r",
                 "max_positions", "max_per_group", "funding_veto_pct", "btc_dump_pct", "daily_loss_pct",
                 "stale_hours", "time_exit_hours"):
        value = getattr(prof, name, None)
        if value is not None:
            out[name] = value
    return out


def build_payload(
    snapshots: Mapping[str, MarketSnapshot],
    scores: Mapping[str, Score],
    news: Mapping[str, NewsReport],
    positions: Iterable[Any] = (),
    settings: Any = None,
    *,
    as_of: datetime | None = None,
) -> dict[str, Any]:
    """The decision input for this cycle from the collected objects (see `payload_from_candidates`).
    `as_of` defaults to the latest snapshot time; risk limits come from `settings` when given."""
    cands = [candidate_payload(snap, scores.get(sym), news.get(sym)) for sym, snap in snapshots.items()]
    when = as_of or max((s.as_of for s in snapshots.values()), default=None)
    if when is None:
        raise ValueError("build_payload needs snapshots or as_of")
    limits = risk_limits_of(settings) if settings is not None else {}
    return payload_from_candidates(cands, as_of=when, open_positions=positions, risk_limits=limits)


# --------------------------------------------------------------------------- messages


def _hash8(text: str) -> str:
    return sha256(text.encode("utf-8")).hexdigest()[:8]


def prompt_version(member: PanelMember) -> str:
    """"decision_v1@<hash of the prompt file>", plus "+m@<hash>" with a member's own system prompt."""
    _, version = load_prompt(DECISION_PROMPT)
    if member.system_prompt:
        version += f"+m@{_hash8(member.system_prompt)}"
    return version


def build_decision_messages(candidates_payload: Mapping[str, Any], member: PanelMember) -> list[Message]:
    """[system: the versioned prompt (+ the member's own instructions), user: the payload as JSON].

    The payload's candidates are sorted by symbol and the JSON has sorted keys, so the same facts
    always give the same messages (and the same cache key)."""
    text, _ = load_prompt(DECISION_PROMPT)
    if member.system_prompt:
        text = f"{text}\n\nAdditional instructions for this panel member:\n{member.system_prompt.strip()}"
    payload = dict(candidates_payload)
    if isinstance(payload.get("candidates"), list):
        payload["candidates"] = sorted(payload["candidates"], key=lambda c: str(c.get("symbol", "")))
    symbols = [str(c.get("symbol", "")) for c in payload.get("candidates", [])]
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    user = (
        f"Candidates ({len(symbols)}): {', '.join(symbols)}\n"
        "Give exactly one verdict per candidate.\n\n"
        f"Decision input (JSON):\n{body}"
    )
    return [Message("system", text), Message("user", user)]


def repair_messages(messages: Sequence[Message], bad_answer: str, error: str) -> list[Message]:
    return [
        *messages,
        Message("assistant", bad_answer[:8000] if bad_answer else "(empty answer)"),
        Message(
            "user",
            "Your answer could not be used: "
            f"{error}\nReply again with only the corrected JSON object matching the schema: one verdict "
            "per candidate, action exactly LONG, SHORT or WAIT, confidence a number from 0 to 1.",
        ),
    ]


