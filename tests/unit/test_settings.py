from __future__ import annotations

import pytest

from core.errors import ConfigError
from core.settings import load_settings


def test_defaults_are_paper_replay_fixed_universe() -> None:
    s = load_settings()
    assert s.mode == "paper" and s.data_source == "replay" and s.risk_profile == "default"
    assert len(s.symbols) == 6 and len(s.panel) == 6
    assert s.signal.tf_weights == {"1h": 0.30, "4h": 0.50, "1d": 0.20}


def test_the_sections_the_pure_leaves_take_are_frozen() -> None:
    """The math engine and the consensus take `signal` / `consensus` as their parameters: frozen."""
    from pydantic import ValidationError

    s = load_settings()
    with pytest.raises(ValidationError, match="frozen"):
        s.signal.long_threshold = 0.1  # type: ignore[misc]
    with pytest.raises(ValidationError, match="frozen"):
        s.consensus.quorum = 1  # type: ignore[misc]
    assert s.signal.model_copy(update={"long_threshold": 0.5}).long_threshold == 0.5


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


# --------------------------------------------------------------------------- issue 13 items 4, 17, 27


@pytest.mark.parametrize("member,field,value", [
    ({"timeout_s": -3}, "timeout_s", "-3"),
    ({"timeout_s": 0}, "timeout_s", "0"),
    ({"timeout_s": ".inf"}, "timeout_s", "inf"),
    ({"price_in_per_mtok": -1}, "price_in_per_mtok", "-1"),
    ({"price_out_per_mtok": -0.5}, "price_out_per_mtok", "-0.5"),
    ({"weight": -1}, "weight", "-1"),
    ({"weight": ".nan"}, "weight", "nan"),
    ({"model": ""}, "model", "''"),
])
def test_panel_numbers_are_validated_naming_member_and_field(tmp_path, member, field, value) -> None:
    items = ", ".join(f"{k}: {v!r}" if isinstance(v, str) and not v.startswith(".") else f"{k}: {v}"
                      for k, v in member.items())
    (tmp_path / "quorum.yaml").write_text(
        "panel:\n  - {id: gpt, provider: openai, model: gpt-x}\n"
        f"  - {{id: claude-x, provider: anthropic, model: claude-y, {items}}}\n")
    with pytest.raises(ConfigError) as e:
        load_settings()
    msg = str(e.value)
    assert "panel member 'claude-x' (#1)" in msg and field in msg and value in msg
    assert "gpt" not in msg.replace("gpt-x", "")  # only the bad member is named


def test_panel_member_error_from_the_environment_names_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("QUORUM_PANEL", '[{"id": "a", "provider": "openai", "model": "m", "timeout_s": -3}]')
    with pytest.raises(ConfigError, match=r"QUORUM_PANEL\): panel member 'a' \(#0\): timeout_s = -3"):
        load_settings()


def test_panel_ids_must_be_unique_and_budgets_non_negative(tmp_path, monkeypatch) -> None:
    (tmp_path / "quorum.yaml").write_text(
        "panel:\n  - {id: gpt, provider: openai, model: a}\n  - {id: gpt, provider: openai, model: b}\n")
    with pytest.raises(ConfigError, match="'gpt' appears twice"):
        load_settings()
    (tmp_path / "quorum.yaml").unlink()
    monkeypatch.setenv("QUORUM_TOKEN_BUDGET_DAY", "-1")
    with pytest.raises(ConfigError, match="token_budget_day"):
        load_settings()


def test_signal_regime_ratios_are_validated(tmp_path) -> None:
    (tmp_path / "quorum.yaml").write_text("signal:\n  panic_vol_ratio: 1.2\n  digesting_vol_ratio: 1.3\n")
    with pytest.raises(ConfigError, match="panic_vol_ratio .* must be above digesting_vol_ratio"):
        load_settings()


def test_unknown_yaml_keys_are_rejected_with_a_suggestion(tmp_path) -> None:
    (tmp_path / "quorum.yaml").write_text(
        "exchange: okx\nrisk_profil: kelly\npaper:\n  startng_balance: 5000\n"
        "panel:\n  - {id: gpt, provider: openai, model: gpt-x, timout_s: 30}\n")
    with pytest.raises(ConfigError) as e:
        load_settings()
    msg = str(e.value)
    assert "quorum.yaml" in msg
    assert "unknown key 'risk_profil' (did you mean 'risk_profile'?)" in msg
    assert "unknown key 'paper.startng_balance' (did you mean 'starting_balance'?)" in msg
    assert "unknown key 'panel[0].timout_s' (did you mean 'timeout_s'?)" in msg


def test_unknown_yaml_key_without_a_close_match_lists_the_known_keys(tmp_path) -> None:
    (tmp_path / "quorum.yaml").write_text("zzz: 1\n")
    with pytest.raises(ConfigError, match="unknown key 'zzz'; known keys: mode, "):
        load_settings()


def test_error_from_the_file_names_the_files_key_not_the_variable(tmp_path, monkeypatch) -> None:
    (tmp_path / "quorum.yaml").write_text("paper:\n  taker_fee: -1\nexchange: mtgox\n")
    with pytest.raises(ConfigError) as e:
        load_settings()
    msg = str(e.value)
    assert "key 'paper.taker_fee' in " in msg and "QUORUM_PAPER__TAKER_FEE" not in msg
    assert "key 'exchange' in " in msg and "QUORUM_EXCHANGE" not in msg
    # the same bad value from the environment names the variable
    monkeypatch.setenv("QUORUM_EXCHANGE", "mtgox2")
    with pytest.raises(ConfigError, match=r"setting 'exchange' \(QUORUM_EXCHANGE\) = 'mtgox2'"):
        load_settings()


def test_error_from_dotenv_names_the_variable(tmp_path) -> None:
    (tmp_path / ".env").write_text("QUORUM_PAPER__SLIPPAGE_BPS=-4\n")
    with pytest.raises(ConfigError, match=r"QUORUM_PAPER__SLIPPAGE_BPS\) = '-4'"):
        load_settings()


def test_directory_or_binary_settings_file_is_one_clear_error(tmp_path, monkeypatch) -> None:
    (tmp_path / "quorum.yaml").mkdir()
    with pytest.raises(ConfigError, match="quorum.yaml: is a directory"):
        load_settings()
    (tmp_path / "quorum.yaml").rmdir()
    (tmp_path / "quorum.yaml").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match="quorum.yaml: not a text YAML file"):
        load_settings()
    (tmp_path / "nul.yaml").write_bytes(b"mode: paper\x00\x00\n")
    monkeypatch.setenv("QUORUM_CONFIG", str(tmp_path / "nul.yaml"))
    with pytest.raises(ConfigError, match="nul.yaml: not a text YAML file"):
        load_settings()
