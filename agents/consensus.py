"""Consensus: the panel's votes and the math score in, one Decision out. Pure and deterministic.

The rule (settings: `consensus.quorum` q, `consensus.agreement` a, `consensus.panel_weight` p,
signal thresholds L = `signal.long_threshold` (+0.45) and S = `signal.short_threshold` (-0.45)):

1. Only this symbol's *valid* votes count (abstentions are counted in `votes_total`, never weighed).
   Votes are sorted canonically (member id, action, confidence, ...) and de-duplicated per member
   (the first in that order is kept), so the order in which votes arrive never matters.
2. Weights: `weights[member_id]` when given (e.g. from the track record), else 1.0; a weight <= 0
   removes the vote. k = number of weighted valid votes, W = their total weight.
3. No quorum (k < q): the decision is the math score alone: LONG if math > L, SHORT if math < S,
   else WAIT; `fallback_to_math=True` and the reason says so.
4. With quorum, each vote becomes a score on the math engine's scale: WAIT -> 0; LONG with
   confidence c -> L + (1 - L)·c (a LONG vote means "the score is in the LONG zone", its confidence
   places it within the zone); SHORT -> S - (1 + S)·c.
   panel  = Σ w·score / W                     (weighted mean, in [-1, 1])
   combined = p·panel + (1 - p)·math
   share(X) = (weight of votes for X) / W
5. LONG when all of: combined > L; panel > 0 (the panel leans long); share(LONG) >= a; and at least
   q votes are LONG. SHORT symmetrically (combined < S, panel < 0, share(SHORT) >= a, >= q SHORT
   votes). Otherwise WAIT, and the reason names the first condition that failed.
   Requiring q votes on the winning side means a WAIT vote can never complete a quorum for a trade,
   so adding a WAIT vote never turns a WAIT into a trade.
6. `confidence` = |combined| (|math| in fallback), clipped to [0, 1]. `tally` holds the weight shares
   of LONG/SHORT/WAIT and the panel score. `dissent` lists every valid vote whose action differs
   from the decision, as "member:ACTION(confidence)", sorted by member id.

Properties (tested with hypothesis): vote order never changes the decision; adding a WAIT vote never
turns WAIT into a trade; when every valid vote agrees (and there is a quorum, or not) and the math
score is past the threshold in the same direction, the decision follows them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime

from core.settings import ConsensusSettings, SignalSettings
from core.types import Action, Decision, Vote

_DIR = {Action.LONG: 1, Action.SHORT: -1, Action.WAIT: 0}


def vote_sort_key(v: Vote) -> tuple:
    """A total order on votes that does not depend on arrival order."""
    return (
        v.member_id,
        v.symbol,
        0 if v.valid else 1,
        str(v.action.value if v.action is not None else ""),
        -float(v.confidence),
        v.abstain_reason or "",
        v.provider,
        v.model,
        v.prompt_version,
        v.rationale,
        tuple(v.key_factors),
        bool(v.cached),
        float(v.latency_s),
        int(v.input_tokens),
        int(v.output_tokens),
        float(v.cost_usd),
    )


def canonical_votes(votes: Iterable[Vote], symbol: str | None = None) -> list[Vote]:
    """This symbol's votes, sorted canonically, one per member (the first in canonical order)."""
    out: list[Vote] = []
    seen: set[str] = set()
    for v in sorted((v for v in votes if symbol is None or v.symbol == symbol), key=vote_sort_key):
        if v.member_id in seen:
            continue
        seen.add(v.member_id)
        out.append(v)
    return out


def vote_score(action: Action, confidence: float, signal: SignalSettings) -> float:
    """A vote on the math engine's scale (see the module docstring, step 4)."""
    c = min(1.0, max(0.0, float(confidence))) if math.isfinite(confidence) else 0.0
    if action is Action.LONG:
        return signal.long_threshold + (1.0 - signal.long_threshold) * c
    if action is Action.SHORT:
        return signal.short_threshold - (1.0 + signal.short_threshold) * c
    return 0.0


def _signal(x: float, signal: SignalSettings) -> Action:
    return signal.action_for(x)


def _dissent(valid: list[tuple[Vote, float]], action: Action) -> tuple[str, ...]:
    return tuple(
        f"{v.member_id}:{v.action.value}({v.confidence:.2f})"
        for v, _ in valid
        if v.action is not action
    )


def consensus(
    symbol: str,
    as_of: datetime,
    votes: Iterable[Vote],
    math_score: float,
    settings: ConsensusSettings,
    signal: SignalSettings,
    weights: Mapping[str, float] | None = None,
) -> Decision:
    """Combine this symbol's votes with the math score by the rule in the module docstring."""
    mine = canonical_votes(votes, symbol)
    m = float(math_score) if math.isfinite(math_score) else 0.0
    m = min(1.0, max(-1.0, m))

    valid: list[tuple[Vote, float]] = []
    for v in mine:
        if not v.valid:
            continue
        w = 1.0 if weights is None else float(weights.get(v.member_id, 1.0))
        if not math.isfinite(w) or w <= 0:
            continue
        valid.append((v, w))
    k = len(valid)
    total = len(mine)
    q = settings.quorum

    if k < q:
        action = _signal(m, signal)
        abstained = total - sum(1 for v in mine if v.valid)
        return Decision(
            symbol=symbol,
            as_of=as_of,
            action=action,
            confidence=round(min(1.0, abs(m)), 6),
            math_score=m,
            combined_score=m,
            votes_valid=k,
            votes_total=total,
            tally=_tally(valid, None),
            dissent=_dissent(valid, action),
            fallback_to_math=True,
            reason=(f"no quorum: {k} valid vote(s) of {total} ({abstained} abstained), need {q}; "
                    f"math score alone {m:+.3f} -> {action.value}"),
        )

    w_total = math.fsum(w for _, w in valid)
    panel = math.fsum(w * vote_score(v.action, v.confidence, signal) for v, w in valid) / w_total
    panel = min(1.0, max(-1.0, panel))
    p = settings.panel_weight
    combined = p * panel + (1.0 - p) * m
    shares = {
        a: math.fsum(w for v, w in valid if v.action is a) / w_total
        for a in (Action.LONG, Action.SHORT, Action.WAIT)
    }
    counts = {a: sum(1 for v, _ in valid if v.action is a) for a in (Action.LONG, Action.SHORT, Action.WAIT)}
    head = f"combined {combined:+.3f} = {p:.2f}·panel {panel:+.3f} + {1 - p:.2f}·math {m:+.3f}"

    action = Action.WAIT
    why: str
    if combined > signal.long_threshold:
        action, why = _check(Action.LONG, panel, shares, counts, settings)
    elif combined < signal.short_threshold:
        action, why = _check(Action.SHORT, panel, shares, counts, settings)
    else:
        why = f"inside the thresholds ({signal.short_threshold:+.2f}, {signal.long_threshold:+.2f})"

    return Decision(
        symbol=symbol,
        as_of=as_of,
        action=action,
        confidence=round(min(1.0, abs(combined)), 6),
        math_score=m,
        combined_score=combined,
        votes_valid=k,
        votes_total=total,
        tally=_tally(valid, panel, shares),
        dissent=_dissent(valid, action),
        fallback_to_math=False,
        reason=f"{action.value}: {head}; {why}; {k}/{total} valid",
    )


def _check(
    side: Action,
    panel: float,
    shares: dict[Action, float],
    counts: dict[Action, int],
    settings: ConsensusSettings,
) -> tuple[Action, str]:
    lean = panel > 0 if side is Action.LONG else panel < 0
    if not lean:
        return Action.WAIT, f"past the {side.value} threshold but the panel leans the other way"
    if shares[side] + 1e-12 < settings.agreement:
        return Action.WAIT, (f"{side.value} share {shares[side]:.2f} below the agreement "
                             f"{settings.agreement:.2f}")
    if counts[side] < settings.quorum:
        return Action.WAIT, f"only {counts[side]} {side.value} vote(s), need {settings.quorum}"
    return side, (f"{side.value} share {shares[side]:.2f} >= {settings.agreement:.2f} "
                  f"with {counts[side]} {side.value} votes")


def _tally(
    valid: list[tuple[Vote, float]],
    panel: float | None,
    shares: dict[Action, float] | None = None,
) -> dict[str, float]:
    if shares is None:
        w_total = math.fsum(w for _, w in valid)
        shares = {
            a: (math.fsum(w for v, w in valid if v.action is a) / w_total) if w_total > 0 else 0.0
            for a in (Action.LONG, Action.SHORT, Action.WAIT)
        }
    out = {a.value: round(s, 6) for a, s in shares.items()}
    if panel is not None:
        out["panel_score"] = round(panel, 6)
    return out
