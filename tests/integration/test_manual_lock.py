"""`quorum enter`, `exit` and `reconcile` hold the account's lock (store/lock.py) like a cycle, the
monitor and `halt --close-all`: while another run holds the account they wait, then refuse with one
line naming the holder, and change nothing; once it is free they run."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from pipeline import manual
from store.lock import AccountBusy
from tests.integration.conftest import account_held

SYMBOL = "SOL/USDT:USDT"


def _rows(url: str) -> dict[str, list]:
    eng = create_engine(url)
    try:
        with eng.connect() as c:
            return {t: sorted(tuple(r) for r in c.execute(text(f"select * from {t}")).fetchall())
                    for t in ("positions", "orders", "fills", "accounts", "cycles")}
    finally:
        eng.dispose()


@pytest.mark.parametrize("command", ["enter", "exit", "reconcile"])
def test_manual_commands_wait_for_the_account_and_change_nothing_when_refused(tmp_path: Path, command: str) -> None:
    from core.settings import load_settings
    from exchange.factory import build_source
    from store.db import dispose_all, get_session_factory

    url = f"sqlite:///{tmp_path / 'lock.db'}"
    settings = load_settings(database_url=url, account_lock_wait_s=0.3)
    source = build_source(settings)
    factory = get_session_factory(settings)
    now = datetime(2025, 5, 23, 4, tzinfo=UTC)
    call = {
        "enter": lambda: manual.manual_entry(factory, source, settings, SYMBOL, "long", now),
        "exit": lambda: manual.manual_exit(factory, source, settings, SYMBOL, now),
        "reconcile": lambda: manual.reconcile(factory, source, settings, now),
    }[command]
    if command == "exit":  # something to exit
        assert manual.manual_entry(factory, source, settings, SYMBOL, "long", now)["status"] == "approved"
    before = _rows(url)
    with account_held(settings):
        with pytest.raises(AccountBusy, match=rf"paper account is busy: a trading cycle \(pid \d+\) is running on it; "
                                              rf"quorum {command} did not start"):
            call()
        assert _rows(url) == before
    out = call()  # the account is free again
    if command == "enter":
        assert out["status"] == "approved"
    elif command == "exit":
        assert len(out) == 1 and SYMBOL in out[0], out
    dispose_all()
