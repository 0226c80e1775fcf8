"""Candidate-aware answers for the fake LLM servers (tests/fakes/llm_servers.py `responder=`).

`panel_responder(body)` reads the decision input out of the request (the JSON after the line
"Decision input (JSON):" in the user message, as agents.prompt.build_decision_messages writes it) and
answers one verdict per candidate: LONG when the math score is > +0.2, SHORT when < -0.2, else WAIT,
with confidence min(1, 0.5 + |score|). Requests that are not panel decisions (hunter, news) get
`{"tickers": [], "events": []}`, valid for HunterAnswer and NewsAnswer alike.

    with LocalPanel(responder=panel_responder, delay_s=1.0) as panel: ...
"""

from __future__ import annotations

import json
from typing import Any

MARKER = "Decision input (JSON):\n"


def _texts(body: dict[str, Any]) -> list[str]:
    out: list[str] = []
    for m in (body or {}).get("messages", []) or []:
        if not isinstance(m, dict):
            continue
        content = m.get("text") or m.get("content")
        if isinstance(content, list):  # anthropic blocks / xAI content parts
            content = "".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
        if isinstance(content, str):
            out.append(content)
    return out


def decision_input(body: dict[str, Any]) -> dict[str, Any] | None:
    for text in reversed(_texts(body)):
        if MARKER in text:
            try:
                return json.loads(text.split(MARKER, 1)[1])
            except ValueError:
                return None
    return None


def verdict_for(candidate: dict[str, Any]) -> dict[str, Any]:
    final = float(((candidate.get("math") or {}).get("final")) or 0.0)
    action = "LONG" if final > 0.2 else "SHORT" if final < -0.2 else "WAIT"
    return {"symbol": candidate.get("symbol", ""), "action": action,
            "confidence": round(min(1.0, 0.5 + abs(final)), 3),
            "rationale": f"math score {final:+.2f}", "key_factors": ["math score"]}


def panel_responder(body: dict[str, Any]) -> str:
    payload = decision_input(body)
    if payload is None:
        return json.dumps({"tickers": [], "events": []})
    return json.dumps({"verdicts": [verdict_for(c) for c in payload.get("candidates", [])]})
