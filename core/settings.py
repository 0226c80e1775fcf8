"""Settings: QUORUM_* environment variables, an optional .env, and an optional YAML file.

Precedence (highest first): constructor arguments, environment, .env, quorum.yaml, defaults.
The YAML file is `quorum.yaml` in the working directory, or the path in QUORUM_CONFIG.
A bad value raises ConfigError naming the setting, the value and what is allowed, and where the value
came from: the environment variable, or the file's key when it came from the file. An unknown key in
the file (at any depth) is an error naming it, with the closest known key as a suggestion.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from core.errors import ConfigError
from core.settings_files import YamlSource, _describe, _env_names, _source, read_yaml, yaml_path
from core.settings_sections import (  # re-exported: many callers import the sections from here
    PER_SYMBOL_STRATEGIES,
    STRATEGIES,
    ConsensusSettings,
    GridSettings,
    HybridSettings,
    PanelMember,
    PaperSettings,
    RebalanceSettings,
    SignalSettings,
    StrategyParams,
    VolatilitySettings,
    _member_error,
    default_panel,
)

__all__ = [
    "DEFAULT_SYMBOLS", "PER_SYMBOL_STRATEGIES", "PROJECT_ROOT", "RISK_PROFILES", "STRATEGIES", "SUPPORTED_EXCHANGES",
    "ConsensusSettings", "GridSettings", "HybridSettings", "PanelMember", "PaperSettings", "RebalanceSettings",
    "Settings", "SignalSettings", "StrategyParams", "VolatilitySettings", "default_panel", "load_settings",
    "require_live_confirmation", "yaml_path",
]

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


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="QUORUM_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="ignore",
        validate_default=True,
        allow_inf_nan=False,
    )

    mode: Literal["paper", "live"] = "paper"
    live_trading_confirmed: bool = False
    data_source: Literal["replay", "ccxt"] = "replay"
    data_dir: Path = PROJECT_ROOT / "data"
    replay_exchange: str = "binance"
    replay_spread_pct: float = Field(0.02, ge=0, le=5)
    exchange: str = "bybit"
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
    dashboard_token: SecretStr | None = None  # QUORUM_DASHBOARD_TOKEN: enables the dashboard's halt/resume/close-all
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
    # live trading (exchange/live_broker.py); keys are SecretStr: never logged, printed or stored
    exchange_api_key: SecretStr | None = None
    exchange_secret: SecretStr | None = None
    exchange_password: SecretStr | None = None
    exchange_secret_block: str | None = Field(
        None, description="name of a Prefect Secret block holding JSON {api_key, secret, password}")
    exchange_sandbox: bool = False
    exchange_api_base: str | None = Field(None, description="send every REST call of the exchange to this base URL")
    exchange_timeout_ms: int = Field(10_000, ge=100, le=120_000)
    live_account: str = Field("live", min_length=1, max_length=32)
    live_margin_mode: Literal["isolated", "cross"] = "isolated"
    max_order_notional_usd: float = Field(25_000.0, gt=0, description="per-order notional cap (live)")
    max_orders_per_cycle: int = Field(
        16, ge=4, description="orders one cycle or monitor run may write (live): entries, their stops and targets, "
        "stop moves, closes; checked before each new entry with the orders it needs (an entry with its stop and "
        "two targets is 4), never refusing a protective order or a close")
    strategy: Literal["trend", "grid", "volatility", "hybrid", "rebalance"] = "trend"
    strategy_symbols: dict[str, str] = Field(default_factory=dict, description="per-symbol strategy override")
    strategies: StrategyParams = Field(default_factory=StrategyParams)

    def strategy_for(self, symbol: str) -> str:
        return self.strategy_symbols.get(symbol.upper(), self.strategy)

    @field_validator("strategy_symbols")
    @classmethod
    def _strategy_symbols(cls, v: dict[str, str]) -> dict[str, str]:
        out = {}
        for sym, name in v.items():
            if name not in PER_SYMBOL_STRATEGIES:
                raise ValueError(f"strategy {name!r} for {sym}: per symbol one of {', '.join(PER_SYMBOL_STRATEGIES)}")
            out[sym.upper()] = name
        return out

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

    @field_validator("panel", mode="wrap")
    @classmethod
    def _panel(cls, v: Any, handler: ValidatorFunctionWrapHandler) -> list[PanelMember]:
        """Each member's errors named by the member's id and field; ids unique."""
        try:
            members: list[PanelMember] = handler(v)
        except ValidationError as exc:
            raise ValueError("; ".join(_member_error(v, e) for e in exc.errors())) from None
        seen: set[str] = set()
        for m in members:
            if m.id in seen:
                raise ValueError(f"panel member id {m.id!r} appears twice; ids must be unique")
            seen.add(m.id)
        return members

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


def load_settings(**overrides: Any) -> Settings:
    """Build Settings, turning validation errors into one ConfigError naming each bad setting and
    where its value came from."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        path = yaml_path()
        yaml_data = read_yaml(path, Settings) if path is not None else {}
        env = _env_names()
        lines = [_describe(e, _source(tuple(e.get("loc", ())), overrides, env, yaml_data, path))
                 for e in exc.errors()]
        raise ConfigError("; ".join(lines)) from None


def require_live_confirmation(settings: Settings) -> None:
    """mode=live trades real money: it needs the explicit opt-in (checked before anything runs)."""
    if settings.mode == "live" and not settings.live_trading_confirmed:
        raise ConfigError("setting 'mode' = 'live' needs QUORUM_LIVE_TRADING_CONFIRMED=true (explicit opt-in)")
