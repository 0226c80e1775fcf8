"""Settings: QUORUM_* environment variables, an optional .env, and an optional YAML file.

Precedence (highest first): constructor arguments, environment, .env, quorum.yaml, defaults.
The YAML file is `quorum.yaml` in the working directory, or the path in QUORUM_CONFIG.
A bad value raises ConfigError naming the setting, the value and what is allowed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from core.errors import ConfigError
from core.types import Action

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SYMBOLS = (
    "BTC/USDT:USDT",
    "ETH/USDT:USDT",
    "SOL/USDT:USDT",
    "XRP/USDT:USDT",
    "DOGE/USDT:USDT",
    "BNB/USDT:USDT",
)
SUPPORTED_EXCHANGES = ("bybit", "aster", "binanceusdm", "okx", "krakenfutures", "hyperliquid")
RISK_PROFILES = ("default", "conservative", "kelly", "arena")


class PanelMember(BaseModel):
    """One model on the decision panel."""

    id: str
    provider: Literal["openai", "deepseek", "anthropic", "xai", "ollama", "openrouter"]
    model: str
    enabled: bool | None = None  # None: enabled when its key or host is present
    timeout_s: float = 60.0
    price_in_per_mtok: float = 0.0
    price_out_per_mtok: float = 0.0
    base_url: str | None = None
    system_prompt: str | None = None
    weight: float = 1.0


def default_panel() -> list[PanelMember]:
    return [
        PanelMember(id="gpt", provider="openai", model="gpt-5.1", timeout_s=90,
                    price_in_per_mtok=1.25, price_out_per_mtok=10.0),
        PanelMember(id="grok", provider="xai", model="grok-4", timeout_s=120,
                    price_in_per_mtok=3.0, price_out_per_mtok=15.0),
        PanelMember(id="deepseek", provider="deepseek", model="deepseek-reasoner", timeout_s=180,
                    price_in_per_mtok=0.28, price_out_per_mtok=0.42),
        PanelMember(id="claude-sonnet", provider="anthropic", model="claude-sonnet-4-5", timeout_s=90,
                    price_in_per_mtok=3.0, price_out_per_mtok=15.0),
        PanelMember(id="claude-opus", provider="anthropic", model="claude-opus-4-1", timeout_s=150,
                    price_in_per_mtok=15.0, price_out_per_mtok=75.0),
        PanelMember(id="qwen-local", provider="ollama", model="qwen3:8b", timeout_s=120),
    ]


class PaperSettings(BaseModel):
    starting_balance: float = Field(10_000.0, gt=0)
    taker_fee: float = Field(0.0005, ge=0, lt=0.01)
    maker_fee: float = Field(0.0002, ge=0, lt=0.01)
    slippage_bps: float = Field(2.0, ge=0, lt=500)


class SignalSettings(BaseModel):
    long_threshold: float = Field(0.45, gt=0, lt=1)
    short_threshold: float = Field(-0.45, gt=-1, lt=0)
    tf_weights: dict[str, float] = Field(default_factory=lambda: {"1h": 0.30, "4h": 0.50, "1d": 0.20})
    panic_vol_ratio: float = 2.5
    digesting_vol_ratio: float = 1.3

    def action_for(self, score: float) -> Action:
        """The signal of a score in [-1, 1]: above long_threshold LONG, below short_threshold SHORT, else
        WAIT (one rule for the math engine and the consensus)."""
        if score > self.long_threshold:
            return Action.LONG
        if score < self.short_threshold:
            return Action.SHORT
        return Action.WAIT

    @field_validator("tf_weights")
    @classmethod
    def _weights(cls, v: dict[str, float]) -> dict[str, float]:
        if set(v) != {"1h", "4h", "1d"}:
            raise ValueError(f"needs exactly the keys 1h, 4h, 1d, got {sorted(v)}")
        if abs(sum(v.values()) - 1.0) > 1e-6:
            raise ValueError(f"weights must sum to 1, got {sum(v.values()):.3f}")
        return v


class ConsensusSettings(BaseModel):
    quorum: int = Field(3, ge=1, description="minimum valid votes before the panel counts")
    agreement: float = Field(0.6, gt=0, le=1, description="share of valid weight on the winning side")
    panel_weight: float = Field(0.6, ge=0, le=1, description="weight of the panel vs the math score")
    track_record_weights: bool = False


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="QUORUM_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="ignore",
        validate_default=True,
    )

    mode: Literal["paper", "live"] = "paper"
    live_trading_confirmed: bool = False
    data_source: Literal["replay", "ccxt"] = "replay"
    data_dir: Path = PROJECT_ROOT / "data"
    replay_exchange: str = "binance"
    replay_spread_pct: float = Field(0.02, ge=0, le=5)
    exchange: str = "bybit"
    exchange_api_base: str | None = None  # every ccxt endpoint at this URL (a local exchange server, a proxy)
    symbols: Annotated[list[str], NoDecode] = Field(default_factory=lambda: list(DEFAULT_SYMBOLS))
    universe: Literal["fixed", "scanner", "hunter"] = "fixed"
    scanner_top_n: int = Field(10, ge=1, le=100)
    min_volume_usd: float = Field(10_000_000, ge=0)
    max_spread_pct: float = Field(0.2, gt=0)
    cycle_interval_minutes: int = Field(60, ge=1)
    risk_profile: str = "default"
    database_url: str = f"sqlite:///{PROJECT_ROOT / 'var' / 'quorum.db'}"
    redis_url: str | None = None
    telegram_token: str | None = None
    telegram_channel: str | None = None
    telegram_base_url: str | None = None
    paper: PaperSettings = Field(default_factory=PaperSettings)
    signal: SignalSettings = Field(default_factory=SignalSettings)
    consensus: ConsensusSettings = Field(default_factory=ConsensusSettings)
    panel: list[PanelMember] = Field(default_factory=default_panel)
    llm_cache: bool = True
    token_budget_cycle: int = Field(200_000, ge=0)
    token_budget_day: int = Field(2_000_000, ge=0)
    hunter_model: str = "perplexity/sonar"
    # unattended operation
    account_lock_wait_s: float = Field(600.0, ge=0, description="how long a run waits for the account's lock")
    retention_flow_runs_days: int = Field(14, ge=1, description="Prefect flow runs older than this are deleted")
    retention_analysis_days: int = Field(90, ge=1, description="per-cycle analysis rows older than this are deleted")
    dask_address: str | None = None  # a dask.distributed scheduler for sweeps; None: a local cluster
    dask_workers: int = Field(2, ge=1, le=64, description="workers of the local cluster of a sweep")
    news_model: str = "perplexity/sonar"

    @field_validator("exchange")
    @classmethod
    def _exchange(cls, v: str) -> str:
        v = v.strip().lower()
        if v not in SUPPORTED_EXCHANGES:
            raise ValueError(f"unknown exchange {v!r}; allowed: {', '.join(SUPPORTED_EXCHANGES)}")
        return v

    @field_validator("risk_profile")
    @classmethod
    def _profile(cls, v: str) -> str:
        if v not in RISK_PROFILES:
            raise ValueError(f"unknown risk profile {v!r}; allowed: {', '.join(RISK_PROFILES)}")
        return v

    @field_validator("symbols", mode="before")
    @classmethod
    def _symbols(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [s for s in (p.strip() for p in v.split(",")) if s]
        if isinstance(v, list | tuple):
            out = []
            for s in v:
                if not isinstance(s, str) or "/" not in s:
                    raise ValueError(f"symbol {s!r} is not a ccxt symbol like BTC/USDT:USDT")
                out.append(s.upper())
            return out
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, dotenv_settings, YamlSource(settings_cls))

    @property
    def sqlite_path(self) -> Path | None:
        if self.database_url.startswith("sqlite:///"):
            return Path(self.database_url.removeprefix("sqlite:///"))
        return None


class YamlSource(PydanticBaseSettingsSource):
    """Reads quorum.yaml (or QUORUM_CONFIG). A malformed file is a ConfigError."""

    def _path(self) -> Path | None:
        explicit = os.environ.get("QUORUM_CONFIG")
        if explicit:
            p = Path(explicit)
            if not p.exists():
                raise ConfigError(f"QUORUM_CONFIG={explicit}: file not found")
            return p
        p = Path.cwd() / "quorum.yaml"
        return p if p.exists() else None

    def __call__(self) -> dict[str, Any]:
        path = self._path()
        if path is None:
            return {}
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark else ""
            raise ConfigError(f"{path}{where}: malformed YAML ({getattr(exc, 'problem', exc)})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping of settings at the top level, got {type(data).__name__}")
        return data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False


def _describe(err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err.get("loc", ()))
    env = "QUORUM_" + "__".join(str(p) for p in err.get("loc", ())).upper()
    value = err.get("input")
    msg = err.get("msg", "invalid")
    shown = value if not isinstance(value, dict | list) or len(str(value)) < 80 else "…"
    return f"setting {loc!r} ({env}) = {shown!r}: {msg}"


def load_settings(**overrides: Any) -> Settings:
    """Build Settings, turning validation errors into one ConfigError naming each bad setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = [_describe(e) for e in exc.errors()]
        raise ConfigError("; ".join(lines)) from None
