"""Prefect artifacts of the flow runs: the cycle's candidates table, its summary, every vote with its
confidence and full rationale; the monitor's exits and stop moves; the daily report. Artifacts never
fail a run."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("quorum.artifacts")


def _short(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _vote_cell(v: Mapping[str, Any]) -> str:
    if v["action"]:
        return f"{v['member']} {v['action'][0]} {v['confidence']:.2f}"
    return f"{v['member']} abstain({v['abstain']})"


def candidate_rows(report: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One short row per candidate (readable at 1400 px: no free text longer than ~80 characters;
    the full rationales are in the votes artifact)."""
    rows = []
    for c in report["candidates"]:
        risk = c["risk"]
        why = "; ".join(risk["reasons"]) if not risk["approved"] else c["decision"]["reason"]
        rows.append({"symbol": c["symbol"], "score": c["score"]["final"], "signal": c["score"]["signal"],
                     "regime": f"{c['score']['trend']}/{c['score']['vol_state']}",
                     "votes": ", ".join(_vote_cell(v) for v in c["votes"]) or "none",
                     "decision": f"{c['decision']['action']} {c['decision']['confidence']:.2f}",
                     "risk": "approved" if risk["approved"] else "denied", "why": _short(why, 80),
                     "llm_usd": round(sum(v["cost_usd"] for v in c["votes"]), 4)})
    return rows


def votes_markdown(report: Mapping[str, Any]) -> str:
    """Every vote of the cycle: member, action, confidence, the full rationale and key factors."""
    md = [f"# Votes of cycle {report['cycle_id']}", report["panel"]["status"], ""]
    for c in report["candidates"]:
        dec = c["decision"]
        md.append(f"## {c['symbol']}: {dec['action']} (confidence {dec['confidence']:.2f}, "
                  f"{dec['votes_valid']}/{dec['votes_total']} valid votes)")
        if not c["votes"]:
            md.append("No vote (the decision is on the math score alone).")
        for v in c["votes"]:
            if v["action"]:
                head = f"- **{v['member']}** {v['action']} · confidence {v['confidence']:.2f}"
            else:
                head = f"- **{v['member']}** abstained ({v['abstain']})"
            md.append(head + (" · cached" if v.get("cached") else ""))
            if v.get("rationale"):
                md.append("  " + " ".join(str(v["rationale"]).split()))
            if v.get("key_factors"):
                md.append("  key factors: " + "; ".join(v["key_factors"]))
        md.append(f"Decision: {dec['reason']}")
        md.append("")
    return "\n".join(md)


def _safe(publish) -> None:  # type: ignore[no-untyped-def]
    try:
        publish()
    except Exception as exc:  # noqa: BLE001 - artifacts never fail a run
        log.warning("could not publish artifacts: %s", exc)


def _create_together(*creates) -> None:  # type: ignore[no-untyped-def]
    """Send the artifact requests at once (each is one API round trip) from threads that see this
    run's context (the flow run the artifacts belong to); the first failure is raised."""
    import contextvars
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=len(creates), thread_name_prefix="artifacts") as pool:
        futures = [pool.submit(contextvars.copy_context().run, c) for c in creates]
    for f in futures:
        f.result()


def summary_markdown(report: Mapping[str, Any]) -> str:
    """The cycle's summary: panel status, LLM cost, position updates and the trade plans."""
    cost = report["llm_cost"]
    per = ", ".join(f"{m} {v['tokens']} tok ${v['cost_usd']:.4f}" for m, v in sorted(cost["members"].items()))
    md = [f"# Cycle {report['cycle_id']}", f"as of {report['as_of']} · {report['panel']['status']}",
          f"LLM cost: {cost['tokens']} tokens, ${cost['cost_usd']:.4f}" + (f" ({per})" if per else ""), ""]
    for e in (report.get("monitor") or {}).get("events", []):
        md.append(f"- position update: {e}")
    n_head = len(md)
    for c in report["candidates"]:
        plan = c["risk"]["plan"]
        if c["risk"]["approved"] and plan:
            md.append(f"## {plan['side']} {c['symbol']}")
            md.append(f"entry {plan['entry']} · stop {plan['stop']} · TP1 {plan['tp1']} (50%) · TP2 {plan['tp2']}"
                      f" · {plan['leverage']}x · qty {plan['qty']} · risk ${plan['risk_usd']}")
    if len(md) == n_head:
        md.append("No trade this cycle.")
    return "\n".join(md)


def publish_artifacts(report: Mapping[str, Any]) -> None:
    """The cycle's candidates table, its summary (trade plans, cost) and every vote."""
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    rows, summary, votes = candidate_rows(report), summary_markdown(report), votes_markdown(report)
    _safe(lambda: _create_together(
        lambda: create_table_artifact(key="cycle-candidates", table=rows, description=f"Cycle {report['cycle_id']}"),
        lambda: create_markdown_artifact(key="cycle-summary", markdown=summary),
        lambda: create_markdown_artifact(key="cycle-votes", markdown=votes,
                                         description=f"Every vote of cycle {report['cycle_id']}")))


def publish_monitor_artifact(summary: Mapping[str, Any]) -> None:
    """The monitor run's exits and stop moves (a table; 'no change' when nothing happened)."""
    from prefect.artifacts import create_table_artifact

    rows = [{"event": e} for e in summary.get("events", [])] or [{"event": "no exit or stop move"}]
    _safe(lambda: create_table_artifact(
        key="monitor-events", table=rows,
        description=f"{summary.get('checked', 0)} position(s) checked up to {summary.get('as_of')}"))


def publish_daily_artifact(res: Mapping[str, Any], stats: Any, pulse: Any) -> None:
    """The daily report: the day's stats, per-model hit rates and the market pulse."""
    from prefect.artifacts import create_markdown_artifact

    def fmt(x: Any) -> str:
        return "—" if x is None else (f"{x:.2f}" if isinstance(x, float) else str(x))

    md = [f"# Daily report {res['day']}",
          f"trades {stats.trades} · wins {stats.wins} · losses {stats.losses} · win rate "
          f"{fmt(None if stats.win_rate is None else stats.win_rate * 100)}% · profit factor {fmt(stats.profit_factor)}",
          f"P&L {stats.pnl:+,.2f} · best {fmt(stats.best_trade)} · worst {fmt(stats.worst_trade)} · max drawdown "
          f"{stats.max_drawdown_usd:,.2f}", ""]
    for h in stats.model_hit_rates:
        md.append(f"- {h.member_id}: {h.hits}/{h.total} right at +24 h")
    md += ["", f"Market pulse at {pulse.as_of:%Y-%m-%d %H:%M} UTC: BTC {pulse.btc_trend}, regime {pulse.regime}",
           "top movers: " + (", ".join(f"{s} {m:+.2f}%" for s, m in pulse.top_movers) or "—"),
           "funding extremes: " + (", ".join(f"{s} {r:+.5f}" for s, r in pulse.funding_extremes) or "—")]
    _safe(lambda: create_markdown_artifact(key="daily-report", markdown="\n".join(md),
                                           description=f"Daily report {res['day']}"))


def publish_findings(lines: list[str], title: str = "Reconciliation") -> None:
    """A markdown artifact listing a reconciliation's findings (nothing when there are none)."""
    if not lines:
        return
    from prefect.artifacts import create_markdown_artifact

    _safe(lambda: create_markdown_artifact(key="reconcile-findings",
                                           markdown="\n".join([f"# {title}", ""] + [f"- {x}" for x in lines]),
                                           description=f"{len(lines)} finding(s)"))
