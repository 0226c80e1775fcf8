"""Structured-output schemas for every LLM call.

Each field is typed as narrowly as the provider's structured-output feature allows (enums as
`Literal`, bounded numbers, bounded lists) and its description tells the model what to put there:
the schema is part of the prompt. Answers are validated against these models by the adapters; an
answer that does not validate is an `LLMOutputError` and never parsed any other way.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

ActionLiteral = Literal["LONG", "SHORT", "WAIT"]


def _clip(n: int):  # type: ignore[no-untyped-def]
    """Truncate instead of rejecting: an over-long text or list never costs a vote. (String length
    limits are also not part of the JSON schema: OpenAI's strict mode rejects minLength/maxLength.)"""
    return AfterValidator(lambda v: v[:n])


ShortText = Annotated[str, _clip(600)]
Headline = Annotated[str, _clip(300)]
Symbol = Annotated[str, _clip(60)]


class CandidateVerdict(BaseModel):
    """The panel member's judgement of one candidate."""

    model_config = ConfigDict(title="CandidateVerdict")

    symbol: Symbol = Field(
        description="The candidate's symbol exactly as given in the input, e.g. 'BTC/USDT:USDT'. "
        "Only symbols from the input's candidates list are allowed.",
    )
    action: ActionLiteral = Field(
        description="LONG to open a long position, SHORT to open a short position, WAIT to stay out. "
        "Choose WAIT when the evidence is mixed or weak.",
    )
    confidence: float = Field(
        ge=0.0,
        le=1.0,
        description="How sure you are of this action, from 0.0 (a guess) to 1.0 (certain). "
        "A number between 0 and 1, not a percentage.",
    )
    rationale: ShortText = Field(
        description="One or two short sentences (at most 600 characters) explaining the action, "
        "citing the facts from the input that matter most.",
    )
    key_factors: Annotated[list[str], _clip(5)] = Field(
        default_factory=list,
        description="Up to 5 short phrases naming the decisive factors, e.g. '4h trend up', "
        "'funding crowded long', 'negative news'.",
    )


class PanelAnswer(BaseModel):
    """One verdict per candidate, in any order."""

    model_config = ConfigDict(title="PanelAnswer")

    verdicts: list[CandidateVerdict] = Field(
        description="Exactly one verdict for every candidate in the input, no other symbols.",
    )


class HunterTicker(BaseModel):
    model_config = ConfigDict(title="HunterTicker")

    symbol: Symbol = Field(
        description="The coin's ticker as traded on crypto exchanges, e.g. 'SOL' or 'SOL/USDT'.",
    )
    reason: ShortText = Field(
        description="One short sentence: why this coin is worth a look now (catalyst, momentum, volume).",
    )


class HunterAnswer(BaseModel):
    model_config = ConfigDict(title="HunterAnswer")

    tickers: Annotated[list[HunterTicker], _clip(30)] = Field(
        description="Coins with a liquid USDT perpetual future that are worth analysing now, "
        "most interesting first. Real, currently traded tickers only.",
    )


class NewsItem(BaseModel):
    model_config = ConfigDict(title="NewsItem")

    date: str = Field(
        description="When the event happened or was published, ISO 8601 in UTC, e.g. "
        "'2026-11-20T14:00:00Z' (or '2026-11-20' when the time is unknown).",
    )
    headline: Headline = Field(description="The headline, in your own words, one line.")
    impact: int = Field(
        ge=-2,
        le=2,
        description="Expected price impact on this coin: -2 strongly negative, -1 negative, "
        "0 neutral, +1 positive, +2 strongly positive.",
    )
    reason: ShortText = Field(description="One short sentence: why this impact.")
    critical: bool = Field(
        default=False,
        description="true only for events that can move the market violently: exchange hack or "
        "insolvency, lawsuit or regulator action, ETF decision, delisting, protocol exploit.",
    )
    source: Headline = Field(default="", description="The source's name or URL.")


class NewsAnswer(BaseModel):
    model_config = ConfigDict(title="NewsAnswer")

    events: Annotated[list[NewsItem], _clip(30)] = Field(
        description="News events about this coin from the last 7 days, newest first. "
        "An empty list when there is no relevant news.",
    )
