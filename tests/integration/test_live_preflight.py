"""Live pre-flight: missing, empty or blank API keys (or the password an exchange needs), keys the exchange
refuses (an authentication error on a balance read) and an exchange that cannot be reached are one clear
error line and exit code 2, before Prefect starts and before anything is written; the key is never printed.
Refused keys are tested against the local Bybit v5 / Binance USDⓈ-M servers through the real ccxt."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.common import TEMP_SERVER_NOTE
from tests.fakes.exchange_private import FakePrivateExchange
from tests.fakes.live_setup import EXCHANGES

LIVE = {"QUORUM_MODE": "live", "QUORUM_LIVE_TRADING_CONFIRMED": "true"}
COMMANDS = (["cycle"], ["monitor"], ["reconcile"], ["enter", "BTC/USDT:USDT", "long"], ["live", "check"])


def _run(argv: list[str], monkeypatch, capsys) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    from cli.app import main

    monkeypatch.setattr("sys.argv", ["quorum", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
    cap = capsys.readouterr()
    return int(exc.value.code), cap.out, cap.err


@pytest.fixture
def env(tmp_path: Path, monkeypatch):  # type: ignore[no-untyped-def]
    for k in ("QUORUM_EXCHANGE_API_KEY", "QUORUM_EXCHANGE_SECRET", "QUORUM_EXCHANGE_PASSWORD",
              "QUORUM_EXCHANGE_SECRET_BLOCK", "QUORUM_EXCHANGE_API_BASE", "PREFECT_API_URL"):
        monkeypatch.delenv(k, raising=False)
    db = tmp_path / "q.db"
    monkeypatch.setenv("QUORUM_DATABASE_URL", f"sqlite:///{db}")
    for k, v in LIVE.items():
        monkeypatch.setenv(k, v)
    return db


def _one_clear_line(code: int, out: str, err: str, needs: str, secrets: tuple[str, ...] = ()) -> None:
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1, (code, err)
    assert needs in lines[0] and "Traceback" not in err, err
    assert TEMP_SERVER_NOTE not in err and "Prefect server" not in err, "Prefect started before the check"
    for s in secrets:
        assert s not in out + err, "a credential was printed"


@pytest.mark.parametrize("keys,needs", [
    ({}, "needs QUORUM_EXCHANGE_API_KEY, QUORUM_EXCHANGE_SECRET"),
    ({"QUORUM_EXCHANGE_API_KEY": "", "QUORUM_EXCHANGE_SECRET": "s3cr3t-value"}, "needs QUORUM_EXCHANGE_API_KEY"),
    ({"QUORUM_EXCHANGE_API_KEY": "k3y-value", "QUORUM_EXCHANGE_SECRET": "   "}, "needs QUORUM_EXCHANGE_SECRET"),
    ({"QUORUM_EXCHANGE": "okx", "QUORUM_EXCHANGE_API_KEY": "k3y-value", "QUORUM_EXCHANGE_SECRET": "s3cr3t-value"},
     "on okx needs QUORUM_EXCHANGE_PASSWORD"),
])
def test_missing_or_empty_keys_stop_before_prefect(keys, needs, env, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    for k, v in keys.items():
        monkeypatch.setenv(k, v)
    for argv in (["cycle"], ["monitor"], ["demo"], ["reconcile"], ["live", "check"]):
        code, out, err = _run(argv, monkeypatch, capsys)
        _one_clear_line(code, out, err, needs, ("k3y-value", "s3cr3t-value"))
    assert not env.exists(), "the database was touched"


@pytest.mark.parametrize("ex", EXCHANGES)
@pytest.mark.parametrize("wrong", ["secret", "api_key"])
def test_keys_the_exchange_refuses_stop_before_prefect(ex, wrong, env, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    with FakePrivateExchange(ex) as fx:
        bad = "wr0ng-credential-value"
        monkeypatch.setenv("QUORUM_EXCHANGE", ex)
        monkeypatch.setenv("QUORUM_EXCHANGE_API_BASE", fx.url)
        monkeypatch.setenv("QUORUM_EXCHANGE_API_KEY", bad if wrong == "api_key" else fx.api_key)
        monkeypatch.setenv("QUORUM_EXCHANGE_SECRET", bad if wrong == "secret" else fx.secret)
        for argv in COMMANDS:
            code, out, err = _run(argv, monkeypatch, capsys)
            _one_clear_line(code, out, err, f"{ex}: the exchange refused the API credentials",
                            (bad, fx.secret))
        assert fx.rejected_signatures >= len(COMMANDS)
        assert [(m, p) for m, p, _ in fx.requests if m != "GET"] == [], "a write reached the exchange"
        assert fx.orders_of() == []
    assert not env.exists(), "the database was touched"


def test_unreachable_exchange_stops_before_prefect(env, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("QUORUM_EXCHANGE_API_BASE", "http://127.0.0.1:9")  # discard port: nothing listens
    monkeypatch.setenv("QUORUM_EXCHANGE_API_KEY", "k3y-value")
    monkeypatch.setenv("QUORUM_EXCHANGE_SECRET", "s3cr3t-value")
    monkeypatch.setenv("QUORUM_EXCHANGE_TIMEOUT_MS", "2000")
    for argv in (["cycle"], ["live", "check"]):
        code, out, err = _run(argv, monkeypatch, capsys)
        _one_clear_line(code, out, err, "cannot reach the exchange 'bybit' to check the API keys",
                        ("k3y-value", "s3cr3t-value"))
    assert not env.exists()
