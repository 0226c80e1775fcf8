"""Bad input gets one clear line (no traceback) and nothing is half-written."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

# A Prefect API that does not answer, for the errors that must come before the Prefect step: had the
# command reached it, its error would be "PREFECT_API_URL=... does not answer", not the line the test
# expects; and the process does not load the temporary server's code first (~3 s of CPU per process).
# The tests named `..._before_prefect` keep the temporary-server path (no PREFECT_API_URL at all), and so
# do the --as-of and database checks: with a running server the flow makes those itself (cli/common.py).
NO_PREFECT = {"PREFECT_API_URL": "http://127.0.0.1:9/api"}


def run_cli(*args: str, cwd: Path, env_extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUORUM_")}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "cli.app", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture
def db(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    p = tmp_path / "cli.db"
    return p, {"QUORUM_DATABASE_URL": f"sqlite:///{p}", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}


def _cycles(p: Path) -> int:
    if not p.exists():
        return 0
    with sqlite3.connect(p) as c:
        try:
            return c.execute("select count(*) from cycles").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def _one_clear_line(r: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = [x for x in r.stderr.strip().splitlines() if x.strip()]
    text = " ".join(lines)
    assert text.startswith("error:"), r.stderr
    for n in needles:
        assert n in text, text


def test_unknown_symbol(tmp_path: Path, db) -> None:  # type: ignore[no-untyped-def]
    p, env = db
    env = {**env, **NO_PREFECT}
    r = run_cli("cycle", "--symbols", "PEPE/USDT:USDT", cwd=tmp_path, env_extra=env)
    _one_clear_line(r, "unknown symbol", "PEPE/USDT:USDT")
    assert _cycles(p) == 0


def test_as_of_outside_the_data(tmp_path: Path, db) -> None:  # type: ignore[no-untyped-def]
    p, env = db
    r = run_cli("cycle", "--as-of", "2031-01-01", cwd=tmp_path, env_extra=env)
    _one_clear_line(r, "outside the replay data")
    assert _cycles(p) == 0


def test_malformed_settings_file(tmp_path: Path, db) -> None:  # type: ignore[no-untyped-def]
    p, env = db
    env = {**env, **NO_PREFECT}
    (tmp_path / "quorum.yaml").write_text("risk_profile: [default\n")
    r = run_cli("cycle", cwd=tmp_path, env_extra=env)
    _one_clear_line(r, "quorum.yaml", "malformed YAML")
    assert _cycles(p) == 0


def test_bad_setting_value(tmp_path: Path, db) -> None:  # type: ignore[no-untyped-def]
    _, env = db
    env = {**env, **NO_PREFECT}
    r = run_cli("cycle", cwd=tmp_path, env_extra={**env, "QUORUM_RISK_PROFILE": "yolo"})
    _one_clear_line(r, "risk_profile", "yolo", "allowed")


def test_unreachable_database(tmp_path: Path, db) -> None:  # type: ignore[no-untyped-def]
    _, env = db
    env = {**env, "QUORUM_DATABASE_URL": "postgresql://postgres:s3cret@127.0.0.1:1/nowhere"}
    r = run_cli("cycle", cwd=tmp_path, env_extra=env)
    _one_clear_line(r, "unreachable", "127.0.0.1:1")
    assert "s3cret" not in r.stderr  # no secret in the message


def test_doctor_reports_missing_pieces(tmp_path: Path, db) -> None:  # type: ignore[no-untyped-def]
    _, env = db
    r = run_cli("doctor", cwd=tmp_path, env_extra=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "set OPENAI_API_KEY" in r.stdout and "QUORUM_TELEGRAM_TOKEN" in r.stdout
    assert "replay: 6 symbols" in r.stdout


def test_live_mode_without_confirmation_is_one_line_before_prefect(tmp_path: Path, db) -> None:  # type: ignore[no-untyped-def]
    p, env = db
    r = run_cli("cycle", cwd=tmp_path, env_extra={**env, "QUORUM_MODE": "live"})
    _one_clear_line(r, "QUORUM_LIVE_TRADING_CONFIRMED")
    assert "Flow run" not in r.stderr and _cycles(p) == 0


def test_doctor_fails_an_unconfirmed_live_setting(tmp_path: Path, db) -> None:  # type: ignore[no-untyped-def]
    _, env = db
    r = run_cli("doctor", cwd=tmp_path, env_extra={**env, "QUORUM_MODE": "live"})
    assert r.returncode == 1, r.stdout + r.stderr
    row = next(x for x in r.stdout.splitlines() if "settings" in x)
    assert "FAIL" in row and "QUORUM_LIVE_TRADING_CONFIRMED" in r.stdout and " ok " not in row


def test_unreachable_exchange_is_one_line_before_prefect(tmp_path: Path, db) -> None:  # type: ignore[no-untyped-def]
    p, env = db
    no_network = {"HTTPS_PROXY": "http://127.0.0.1:1", "HTTP_PROXY": "http://127.0.0.1:1", "NO_PROXY": ""}
    r = run_cli("cycle", cwd=tmp_path, env_extra={**env, **no_network, "QUORUM_DATA_SOURCE": "ccxt"})
    _one_clear_line(r, "cannot reach the exchange 'bybit'", "data_source=replay")
    assert _cycles(p) == 0


def test_number_settings_must_be_finite(tmp_path: Path, db) -> None:  # type: ignore[no-untyped-def]
    _, env = db
    env = {**env, **NO_PREFECT}
    for value, why in (("inf", "finite"), ("nan", "finite"), ("-100", "greater than 0")):
        r = run_cli("cycle", cwd=tmp_path, env_extra={**env, "QUORUM_PAPER__STARTING_BALANCE": value})
        _one_clear_line(r, "paper.starting_balance", value, why)


def test_backtest_bad_range_and_panel_are_one_line(tmp_path: Path, db) -> None:  # type: ignore[no-untyped-def]
    _, env = db
    env = {**env, **NO_PREFECT}
    r = run_cli("backtest", "--from", "2025-05-01", "--to", "2025-04-01", cwd=tmp_path, env_extra=env)
    _one_clear_line(r, "--to 2025-04-01 is before --from 2025-05-01")
    r = run_cli("backtest", "--panel", "oracle", cwd=tmp_path, env_extra=env)
    _one_clear_line(r, "--panel 'oracle'", "math")


def test_read_only_database_is_one_line(tmp_path: Path, db) -> None:  # type: ignore[no-untyped-def]
    p, env = db
    assert run_cli("trades", cwd=tmp_path, env_extra=env).returncode == 0  # creates and migrates it
    ro = {**env, "QUORUM_DATABASE_URL": f"sqlite:///file:{p}?mode=ro&uri=true"}
    r = run_cli("halt", "--reason", "test", cwd=tmp_path, env_extra=ro)
    _one_clear_line(r, "readonly database")
