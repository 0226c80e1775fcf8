"""Telegram HTML text helpers: escaping (`esc`), numbers as shown in posts (prices, percents, USD,
R multiples), UTF-16 length and truncation within Telegram's 4096-character limit without splitting
an entity or leaving a tag open, and the plain text of a post. Pure: no I/O, no clock."""

from __future__ import annotations

import html
import math
import re
from collections.abc import Iterable
from decimal import Decimal

from core.types import Side

TELEGRAM_LIMIT = 4096


def esc(value: object) -> str:
    """Escape any value for Telegram HTML (&, <, >, and quotes)."""
    return html.escape(str(value), quote=True)


def display_symbol(symbol: str) -> str:
    """'BTC/USDT:USDT' -> 'BTC/USDT' (the settlement suffix is noise for readers)."""
    return symbol.split(":", 1)[0] if "/" in symbol else symbol


def fmt_price(value: float | Decimal | None) -> str:
    if value is None:
        return "—"
    v = float(value)
    if not math.isfinite(v):
        return "—"
    a = abs(v)
    if a >= 1000:
        return f"{v:,.2f}"
    if a >= 10:
        return f"{v:.3f}"
    if a >= 1:
        return f"{v:.4f}"
    if a == 0:
        return "0"
    decimals = min(10, -math.floor(math.log10(a)) + 4)
    return f"{v:.{decimals}f}"


def fmt_pct(value: float | None, *, signed: bool = True, digits: int = 2) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:+.{digits}f}%" if signed else f"{value:.{digits}f}%"


def fmt_usd(value: float | None, *, signed: bool = True) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    sign = ("+" if value > 0 else "−" if value < 0 else "") if signed else ("−" if value < 0 else "")
    return f"{sign}${abs(value):,.2f}"


def fmt_r(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:+.2f}R"


def _pct_from(entry: float, price: float) -> float:
    return 0.0 if entry == 0 else (price - entry) / entry * 100.0


def _side_badge(side: Side | str) -> str:
    s = str(side.value if isinstance(side, Side) else side).upper()
    icon = "🟢" if s == "LONG" else "🔴" if s == "SHORT" else "⚪"
    return f"{icon} {esc(s)}"


_TOKEN = re.compile(r"<[^>]*>|&[#A-Za-z0-9]+;|[\s\S]", re.UNICODE)


def utf16_len(text: str) -> int:
    """Length as Telegram counts it (UTF-16 code units)."""
    return len(text.encode("utf-16-le")) // 2


def truncate_html(text: str, limit: int = TELEGRAM_LIMIT, ellipsis: str = "…") -> str:
    """Cut `text` to at most `limit` UTF-16 units without splitting an entity or leaving a tag open.

    Works on the simple HTML this module writes (tags and entities are atomic tokens); open tags are
    closed after the ellipsis.
    """
    if utf16_len(text) <= limit:
        return text
    out: list[str] = []
    stack: list[str] = []
    used = 0
    for m in _TOKEN.finditer(text):
        tok = m.group(0)
        closing = "".join(f"</{t}>" for t in reversed(stack))
        if tok.startswith("<") and len(tok) > 1 and tok.endswith(">"):
            name = re.match(r"</?\s*([A-Za-z0-9-]+)", tok)
            tag = name.group(1).lower() if name else ""
            if tok.startswith("</"):
                if stack and stack[-1] == tag:
                    stack.pop()
                out.append(tok)
                used += utf16_len(tok)
                continue
            # only open a tag if there is room to also close it and add the ellipsis
            need = utf16_len(tok) + len(f"</{tag}>") + utf16_len(closing) + utf16_len(ellipsis)
            if used + need > limit:
                break
            out.append(tok)
            used += utf16_len(tok)
            if not tok.endswith("/>"):
                stack.append(tag)
            continue
        size = utf16_len(tok)
        if used + size + utf16_len(closing) + utf16_len(ellipsis) > limit:
            break
        out.append(tok)
        used += size
    # drop a dangling empty tag we opened last
    while stack and out and out[-1].startswith(f"<{stack[-1]}"):
        out.pop()
        stack.pop()
    return "".join(out).rstrip() + ellipsis + "".join(f"</{t}>" for t in reversed(stack))


def _finish(lines: Iterable[str], limit: int = TELEGRAM_LIMIT) -> str:
    return truncate_html("\n".join(line for line in lines if line is not None), limit)


def strip_tags(text: str) -> str:
    """Plain text of a post (for the console)."""
    return html.unescape(re.sub(r"<[^>]+>", "", text))
