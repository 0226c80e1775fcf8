"""What the command line prints: help without type placeholders, --version, tables that never cut a
value, the panel line when the math score decided, and a WAIT that is not a risk denial."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

from rich.console import Console
from rich.table import Table
from typer.testing import CliRunner

from cli.app import app
from cli.common import print_table
from cli.trading import risk_cells
from core.types import Action, Vote
from pipeline.record import panel_status_line

PLACEHOLDER = re.compile(r"<(bool|str|int|float|text|path|list)[^>]*>", re.IGNORECASE)


def _commands(group, path=()):  # type: ignore[no-untyped-def]
    for name, cmd in getattr(group, "commands", {}).items():
        yield (*path, name), cmd
        yield from _commands(cmd, (*path, name))


def test_help_has_no_type_placeholders_and_every_option_is_explained() -> None:
    import typer

    root = typer.main.get_command(app)
    runner = CliRunner()
    paths = [((), root), *_commands(root)]
    assert len(paths) > 12
    for path, cmd in paths:
        res = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "120"})
        assert res.exit_code == 0, (path, res.output)
        assert not PLACEHOLDER.search(res.output), (path, res.output)
        for p in cmd.params:
            if getattr(p, "param_type_name", "") == "option" and not p.hidden:
                assert (p.help or "").strip(), f"quorum {' '.join(path)} {p.opts[0]} has no help text"


def test_version() -> None:
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0 and re.fullmatch(r"quorum \S+\n", res.output), res.output


def _money_table() -> Table:
    t = Table(title="Closed trades")
    for col in ("id", "symbol", "side", "entry", "opened", "closed", "exit", "realised", "fees", "funding", "net",
                "why"):
        t.add_column(col)
    t.add_row("DOGE-202505230400", "DOGE/USDT:USDT", "LONG", "0.250975", "2025-05-23T05:00", "2025-05-27T13:00",
              "stop", "-1,234,567.89", "12,345.67", "+1,234.56", "-1,248,147.12",
              "the stop was hit after the trailing phase moved it to breakeven plus fees")
    return t


def test_tables_never_cut_money_in_a_100_column_terminal() -> None:
    buf = io.StringIO()
    con = Console(file=buf, width=100, force_terminal=True, color_system=None)
    print_table(_money_table(), con)
    text = buf.getvalue()
    assert "…" not in text
    for v in ("-1,234,567.89", "12,345.67", "+1,234.56", "-1,248,147.12", "DOGE/USDT:USDT", "0.250975",
              "2025-05-27T13:00", "DOGE-202505230400"):
        assert v in text, (v, text)


def test_piped_tables_are_not_wrapped_at_80() -> None:
    buf = io.StringIO()
    con = Console(file=buf, width=80, color_system=None)  # not a terminal
    print_table(_money_table(), con)
    row = next(line for line in buf.getvalue().splitlines() if "DOGE" in line)
    assert "-1,248,147.12" in row and "breakeven plus fees" in row, buf.getvalue()


def _vote(member: str, action: Action | None, reason: str | None = None) -> Vote:
    return Vote(member_id=member, symbol="BTC/USDT:USDT", action=action, confidence=0.7 if action else 0.0,
                abstain_reason=reason)


def test_panel_line_says_the_math_score_decided() -> None:
    av = [SimpleNamespace(available=True), SimpleNamespace(available=True), SimpleNamespace(available=False)]
    line = panel_status_line(av, [_vote("a", None, "timeout"), _vote("b", None, "invalid_output")])
    assert "every member abstained" in line and "timeout" in line and "math score decided" in line
    assert "math score alone" in panel_status_line([], [])
    assert "math score alone" in panel_status_line([SimpleNamespace(available=False)], [])
    ok = panel_status_line(av, [_vote("a", Action.LONG), _vote("b", None, "timeout")],
                           {"BTC/USDT:USDT": SimpleNamespace(fallback_to_math=True)})
    assert "1/2 valid votes" in ok and "no quorum on BTC/USDT:USDT" in ok and "math score decided" in ok
    assert "math" not in panel_status_line(av, [_vote("a", Action.LONG)],
                                           {"BTC/USDT:USDT": SimpleNamespace(fallback_to_math=False)})


def test_a_wait_is_no_trade_not_a_risk_denial() -> None:
    wait = {"action": "WAIT", "reason": "combined +0.12 -> WAIT"}
    assert risk_cells(wait, {"approved": False, "reasons": ["decision is WAIT"]}) == (
        "no trade", "no trade: decision is WAIT")
    long = {"action": "LONG", "reason": "6/6 LONG"}
    assert risk_cells(long, {"approved": False, "reasons": ["daily loss -5.2% halts entries"]}) == (
        "denied", "daily loss -5.2% halts entries")
    assert risk_cells(long, {"approved": True, "reasons": []})[0] == "APPROVED"


def test_prefect_failure_reports_of_quorum_errors_are_dropped(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import logging

    from core.errors import ConfigError, TransientError
    from tasks.prefect_env import QuietQuorumErrors

    f = QuietQuorumErrors()

    def rec(msg: str, exc: BaseException | None = None) -> logging.LogRecord:
        info = (type(exc), exc, None) if exc else None
        return logging.LogRecord("prefect.flow_runs", logging.ERROR, __file__, 1, msg, None, info)

    monkeypatch.delenv("QUORUM_DEBUG", raising=False)
    assert not f.filter(rec("Encountered exception during execution: ...", ConfigError("x")))
    assert not f.filter(rec("Finished in state Failed('Task run encountered an exception TransientError: x')"))
    assert not f.filter(rec("Finished in state Failed('Flow run encountered an exception: ConfigError: x')"))
    assert f.filter(rec("Encountered exception during execution", ValueError("a bug keeps its traceback")))
    assert f.filter(rec("Finished in state Failed('Task run encountered an exception ValueError: x')"))
    monkeypatch.setenv("QUORUM_DEBUG", "1")
    assert f.filter(rec("Encountered exception during execution", TransientError("x")))
