"""Issue 13 item 27 through the real CLI: bad configuration is one clear line, exit 2, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.test_cli_errors import NO_PREFECT, _cycles, run_cli


def _one_clear_line(r, *needles: str) -> None:  # type: ignore[no-untyped-def]
    """Exit 2, no traceback, one error message (the console may wrap it: whitespace is collapsed)."""
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    text = " ".join(r.stderr.split())
    assert text.startswith("error:"), r.stderr
    for n in needles:
        assert n in text, text


@pytest.fixture
def db(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    p = tmp_path / "cli.db"
    return p, {"QUORUM_DATABASE_URL": f"sqlite:///{p}", "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
               **NO_PREFECT}  # these errors come before the Prefect step


def test_quorum_symbols_naming_an_unknown_symbol_is_a_clear_error(tmp_path: Path, db) -> None:  # type: ignore[no-untyped-def]
    p, env = db
    r = run_cli("cycle", cwd=tmp_path, env_extra={**env, "QUORUM_SYMBOLS": "BTC/USDT:USDT,PEPE/USDT:USDT"})
    _one_clear_line(r, "QUORUM_SYMBOLS", "unknown symbol", "PEPE/USDT:USDT")
    assert _cycles(p) == 0


@pytest.mark.parametrize("kind", ["directory", "binary"])
def test_directory_or_binary_quorum_yaml_is_one_clear_line(tmp_path: Path, db, kind: str) -> None:  # type: ignore[no-untyped-def]
    _, env = db
    if kind == "directory":
        (tmp_path / "quorum.yaml").mkdir()
    else:
        (tmp_path / "quorum.yaml").write_bytes(bytes(range(256)) * 8)
    r = run_cli("cycle", cwd=tmp_path, env_extra=env)
    _one_clear_line(r, "quorum.yaml", "directory" if kind == "directory" else "not a text YAML file")


def test_unknown_yaml_key_is_one_clear_line(tmp_path: Path, db) -> None:  # type: ignore[no-untyped-def]
    _, env = db
    (tmp_path / "quorum.yaml").write_text("risk_profil: kelly\n")
    r = run_cli("cycle", cwd=tmp_path, env_extra=env)
    _one_clear_line(r, "unknown key 'risk_profil'", "did you mean 'risk_profile'")


def test_sqlite_path_under_a_file_is_one_clear_line(tmp_path: Path, db) -> None:  # type: ignore[no-untyped-def]
    _, env = db
    (tmp_path / "afile").write_text("x")
    env = {k: v for k, v in env.items() if k != "PREFECT_API_URL"}  # checked before Prefect only without a server
    env = {**env, "QUORUM_DATABASE_URL": f"sqlite:///{tmp_path / 'afile' / 'q.db'}"}
    r = run_cli("cycle", cwd=tmp_path, env_extra=env)
    _one_clear_line(r, "afile is a file, not a folder")
