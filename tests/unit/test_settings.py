from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.settings import load_settings


def test_defaults_are_paper_replay_fixed_universe() -> None:
    s = load_settings()
    assert s.mode == "paper" and s.data_source == "replay" and s.risk_profile == "default"
    assert len(s.symbols) == 6 and len(s.panel) == 6
    assert s.signal.tf_weights == {"1h": 0.30, "4h": 0.50, "1d": 0.20}


def test_env_prefix_and_nested(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUORUM_EXCHANGE", "OKX")
    monkeypatch.setenv("QUORUM_SYMBOLS", "btc/usdt:usdt, eth/usdt:usdt")
    monkeypatch.setenv("QUORUM_PAPER__TAKER_FEE", "0.0004")
    s = load_settings()
    assert s.exchange == "okx"
    assert s.symbols == ["BTC/USDT:USDT", "ETH/USDT:USDT"]
    assert s.paper.taker_fee == 0.0004


def test_yaml_file_and_env_precedence(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "quorum.yaml").write_text(
        "exchange: aster\nrisk_profile: conservative\npanel:\n"
        "  - {id: gpt, provider: openai, model: gpt-x, timeout_s: 30}\n")
    s = load_settings()
    assert s.exchange == "aster" and s.risk_profile == "conservative"
    assert [m.id for m in s.panel] == ["gpt"] and s.panel[0].timeout_s == 30
    monkeypatch.setenv("QUORUM_EXCHANGE", "bybit")
    assert load_settings().exchange == "bybit"  # environment beats the file


@pytest.mark.parametrize("var,value,expect", [
    ("QUORUM_EXCHANGE", "mtgox", "exchange"),
    ("QUORUM_RISK_PROFILE", "yolo", "risk_profile"),
    ("QUORUM_MODE", "casino", "mode"),
    ("QUORUM_PAPER__TAKER_FEE", "-1", "paper.taker_fee"),
    ("QUORUM_SYMBOLS", "BTCUSDT", "symbols"),
])
def test_bad_value_names_setting_value_and_allowed(monkeypatch: pytest.MonkeyPatch, var: str, value: str,
                                                   expect: str) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as e:
        load_settings()
    msg = str(e.value)
    assert expect in msg and value.split(",")[0] in msg


def test_bad_allowed_values_are_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUORUM_RISK_PROFILE", "yolo")
    with pytest.raises(ConfigError, match="allowed: default, conservative, kelly, arena"):
        load_settings()


def test_malformed_yaml_is_a_clear_error(tmp_path) -> None:
    (tmp_path / "quorum.yaml").write_text("exchange: [bybit\nrisk_profile: default\n")
    with pytest.raises(ConfigError, match=r"quorum.yaml line \d+: malformed YAML"):
        load_settings()


def test_yaml_top_level_must_be_mapping(tmp_path) -> None:
    (tmp_path / "quorum.yaml").write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings()
