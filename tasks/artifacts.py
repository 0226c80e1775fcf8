"""Prefect artifacts of a cycle run: a table of the candidates and a markdown summary."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("quorum.artifacts")


def publish_artifacts(report: Mapping[str, Any]) -> None:
    """A table of candidates and a markdown summary of any trade plan on the flow run."""
    try:
        from prefect.artifacts import create_markdown_artifact, create_table_artifact
    except ImportError:  # pragma: no cover
        return
    rows = []
    for c in report["candidates"]:
        votes = ", ".join(f"{v['member']}:{v['action'] or 'abstain(' + str(v['abstain']) + ')'}"
                          for v in c["votes"]) or "none"
        rows.append({"symbol": c["symbol"], "score": c["score"]["final"], "signal": c["score"]["signal"],
                     "trend": c["score"]["trend"], "regime": c["score"]["vol_state"], "votes": votes,
                     "decision": c["decision"]["action"], "dissent": ", ".join(c["decision"]["dissent"]),
                     "llm_cost_usd": round(sum(v["cost_usd"] for v in c["votes"]), 6),
                     "risk": "approved" if c["risk"]["approved"] else "denied",
                     "reasons": "; ".join(c["risk"]["reasons"])[:300]})
    try:
        create_table_artifact(key="cycle-candidates", table=rows, description=f"Cycle {report['cycle_id']}")
        cost = report["llm_cost"]
        per = ", ".join(f"{m} {v['tokens']} tok ${v['cost_usd']:.4f}" for m, v in sorted(cost["members"].items()))
        md = [f"# Cycle {report['cycle_id']}", f"as of {report['as_of']} · {report['panel']['status']}",
              f"LLM cost: {cost['tokens']} tokens, ${cost['cost_usd']:.4f}" + (f" ({per})" if per else ""), ""]
        for c in report["candidates"]:
            plan = c["risk"]["plan"]
            if c["risk"]["approved"] and plan:
                md.append(f"## {plan['side']} {c['symbol']}")
                md.append(f"entry {plan['entry']} · stop {plan['stop']} · TP1 {plan['tp1']} (50%) · TP2 {plan['tp2']}"
                          f" · {plan['leverage']}x · qty {plan['qty']} · risk ${plan['risk_usd']}")
        if len(md) == 4:
            md.append("No trade this cycle.")
        create_markdown_artifact(key="cycle-summary", markdown="\n".join(md))
    except Exception as exc:  # noqa: BLE001 - artifacts never fail the cycle
        log.warning("could not publish artifacts: %s", exc)


def publish_findings(lines: list[str], title: str = "Reconciliation") -> None:
    """A markdown artifact listing a reconciliation's findings (nothing when there are none)."""
    if not lines:
        return
    try:
        from prefect.artifacts import create_markdown_artifact

        create_markdown_artifact(key="reconcile-findings", markdown="\n".join([f"# {title}", ""] +
                                                                           [f"- {x}" for x in lines]),
                                 description=f"{len(lines)} finding(s)")
    except Exception as exc:  # noqa: BLE001 - an artifact never fails the run
        log.warning("reconcile artifact not published: %s", exc)
