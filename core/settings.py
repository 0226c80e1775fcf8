"""Settings: QUORUM_* environment variables, an optional .env, and an optional YAML file.

Precedence (highest first): constructor arguments, environment, .env, quorum.yaml, defaults.
The YAML file is `quorum.yaml` in the working directory, or the path in QUORUM_CONFIG.
A bad value raises ConfigError naming the setting, the value and what is allowed, and where the value
came from: the environment variable, or the file's key when it came from the file. An unknown key in
the file (at any depth) is an error naming it, with the closest known key as a suggestion.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
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


FINITE = ConfigDict(allow_inf_nan=False)  # every number setting must be finite (inf/nan rejected)


class PanelMember(BaseModel):
    """One model on the decision panel. Its numbers are checked: a time limit above 0 (at most an
    hour), prices and weight at least 0, all finite."""

    model_config = FINITE

    id: str = Field(min_length=1, max_length=64)
    provider: Literal["openai", "deepseek", "anthropic", "xai", "ollama", "openrouter"]
    model: str = Field(min_length=1)
    enabled: bool | None = None  # None: enabled when its key or host is present
    timeout_s: float = Field(60.0, gt=0, le=3600, allow_inf_nan=False)
    price_in_per_mtok: float = Field(0.0, ge=0, allow_inf_nan=False)
    price_out_per_mtok: float = Field(0.0, ge=0, allow_inf_nan=False)
    base_url: str | None = None
    system_prompt: str | None = None
    weight: float = Field(1.0, ge=0, le=100, allow_inf_nan=False)


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
    model_config = FINITE
    starting_balance: float = Field(10_000.0, gt=0)
    taker_fee: float = Field(0.0005, ge=0, lt=0.01)
    maker_fee: float = Field(0.0002, ge=0, lt=0.01)
    slippage_bps: float = Field(2.0, ge=0, lt=500)


class SignalSettings(BaseModel):
    model_config = FINITE
    long_threshold: float = Field(0.45, gt=0, lt=1)
    short_threshold: float = Field(-0.45, gt=-1, lt=0)
    tf_weights: dict[str, float] = Field(default_factory=lambda: {"1h": 0.30, "4h": 0.50, "1d": 0.20})
    panic_vol_ratio: float = Field(2.5, gt=1, allow_inf_nan=False)
    digesting_vol_ratio: float = Field(1.3, gt=1, allow_inf_nan=False)

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
        if any(not (0 <= w <= 1) for w in v.values()):
            raise ValueError(f"each weight must be between 0 and 1, got {v}")
        if abs(sum(v.values()) - 1.0) > 1e-6:
            raise ValueError(f"weights must sum to 1, got {sum(v.values()):.3f}")
        return v

    @model_validator(mode="after")
    def _regimes(self) -> SignalSettings:
        if self.panic_vol_ratio <= self.digesting_vol_ratio:
            raise ValueError(f"panic_vol_ratio ({self.panic_vol_ratio:g}) must be above digesting_vol_ratio "
                             f"({self.digesting_vol_ratio:g})")
        return self


class ConsensusSettings(BaseModel):
    model_config = FINITE
    quorum: int = Field(3, ge=1, description="minimum valid votes before the panel counts")
    agreement: float = Field(0.6, gt=0, le=1, description="share of valid weight on the winning side")
    panel_weight: float = Field(0.6, ge=0, le=1, description="weight of the panel vs the math score")
    track_record_weights: bool = False


STRATEGIES = ("trend", "grid", "volatility", "hybrid", "rebalance")
PER_SYMBOL_STRATEGIES = ("trend", "grid", "volatility", "hybrid")


class GridSettings(BaseModel):
    """Grid: `levels` entry levels on each side of a reference price (buys below, sells above in a
    neutral grid), each filled level's take-profit at the next level toward the reference."""

    levels: int = Field(5, ge=1, le=50, description="entry levels per side")
    direction: Literal["neutral", "long", "short"] = "neutral"
    atr_mult: float = Field(1.0, gt=0, description="spacing = max(atr_mult x ATR(1h), floor)")
    spacing_floor_pct: float = Field(0.4, gt=0, lt=20, description="minimum spacing, % of the reference")
    size_pct: float = Field(2.0, gt=0, le=50, description="notional per level, % of equity")
    leverage: int = Field(3, ge=1, le=20)
    stop_levels: float = Field(1.0, gt=0, description="stop this many spacings beyond the outermost level")
    reposition_levels: float = Field(1.0, ge=0, description="reposition when price leaves the range by this many spacings")
    reposition_on_trend: bool = True


class VolatilitySettings(BaseModel):
    """Volatility: breakout on volatility expansion in the direction of momentum; in a range regime,
    mean reversion back inside the Bollinger bands; every position exits after `hold_hours`."""

    bb_length: int = Field(20, ge=5, le=500)
    bb_std: float = Field(2.0, gt=0, le=5)
    atr_fast: int = Field(6, ge=2, le=200)
    atr_slow: int = Field(48, ge=5, le=1000)
    expansion: float = Field(1.5, gt=1, le=10, description="ATR(fast)/ATR(slow) that counts as expansion")
    momentum_bars: int = Field(6, ge=1, le=200)
    mean_reversion: bool = True
    hold_hours: float = Field(12.0, gt=0, le=24 * 30)


class HybridSettings(BaseModel):
    """Hybrid: grid while the math engine says RANGE, trend while it says TREND_UP/TREND_DOWN."""

    handover: Literal["close", "finish"] = Field(
        "close", description="on a trend: close the grid now, or cancel its entries and let positions finish")


class RebalanceSettings(BaseModel):
    """Rebalance: hold target weights on spot (the quote asset counts), trade back when drifted."""

    targets: dict[str, float] = Field(default_factory=lambda: {"BTC": 1 / 3, "XRP": 1 / 3, "USDT": 1 / 3})
    quote: str = "USDT"
    drift_band_pct: float = Field(5.0, gt=0, lt=100, description="rebalance when a weight drifts this many points")
    min_trade_usd: float = Field(10.0, ge=0)
    fee: float = Field(0.001, ge=0, lt=0.05, description="spot taker fee")
    slippage_bps: float = Field(2.0, ge=0, lt=500)
    panel_tilt_pct: float = Field(0.0, ge=0, le=25, description="max tilt per asset from panel votes, points (0: off)")

    @field_validator("targets")
    @classmethod
    def _targets(cls, v: dict[str, float]) -> dict[str, float]:
        v = {k.upper(): float(w) for k, w in v.items()}
        if not v or any(w < 0 for w in v.values()):
            raise ValueError(f"weights must be >= 0, got {v}")
        if abs(sum(v.values()) - 1.0) > 1e-3:
            raise ValueError(f"weights must sum to 1, got {sum(v.values()):.4f}")
        return v


class StrategyParams(BaseModel):
    grid: GridSettings = Field(default_factory=GridSettings)
    volatility: VolatilitySettings = Field(default_factory=VolatilitySettings)
    hybrid: HybridSettings = Field(default_factory=HybridSettings)
    rebalance: RebalanceSettings = Field(default_factory=RebalanceSettings)


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


def _member_error(raw: Any, err: Any) -> str:
    """One error of a panel member as "panel member 'gpt' (#1): timeout_s = -3: must be ..."."""
    loc = list(err.get("loc", ()))
    idx = loc.pop(0) if loc and isinstance(loc[0], int) else None
    who = f"#{idx}" if idx is not None else "?"
    if idx is not None and isinstance(raw, list | tuple) and 0 <= idx < len(raw):
        item = raw[idx]
        mid = item.get("id") if isinstance(item, dict) else getattr(item, "id", None)
        if mid:
            who = f"{mid!r} (#{idx})"
    field = ".".join(str(p) for p in loc) or "member"
    value = err.get("input")
    shown = "" if isinstance(value, dict | list) else f" = {value!r}"
    return f"panel member {who}: {field}{shown}: {err.get('msg', 'invalid')}"


def yaml_path() -> Path | None:
    """The settings file in use: QUORUM_CONFIG (must exist) or ./quorum.yaml when present."""
    explicit = os.environ.get("QUORUM_CONFIG")
    if explicit:
        p = Path(explicit)
        if not p.exists():
            raise ConfigError(f"QUORUM_CONFIG={explicit}: file not found")
        return p
    p = Path.cwd() / "quorum.yaml"
    return p if p.exists() or p.is_symlink() else None


def read_yaml(path: Path) -> dict[str, Any]:
    """The file's mapping of settings; anything that is not a readable YAML mapping of known keys is
    one ConfigError naming the file (and the line, or the unknown key)."""
    if path.is_dir():
        raise ConfigError(f"{path}: is a directory, not a YAML settings file")
    try:
        blob = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the settings file ({exc.strerror or type(exc).__name__})") from None
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text YAML file (not UTF-8); is it the right file?") from None
    if "\x00" in text:
        raise ConfigError(f"{path}: not a text YAML file (contains NUL bytes); is it the right file?")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: malformed YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of settings at the top level, got {type(data).__name__}")
    problems = unknown_keys(Settings, data)
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return data


def _model_of(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """(the BaseModel in `annotation`, whether it is a list of them) for X, X | None, list[X]."""
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _model_of(typing.get_args(annotation)[0])
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    if origin in (list, tuple):
        args = typing.get_args(annotation)
        if args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            return args[0], True
    if origin in (typing.Union, types.UnionType):
        for a in typing.get_args(annotation):
            m, many = _model_of(a)
            if m is not None:
                return m, many
    return None, False


def unknown_keys(model: type[BaseModel], data: dict[str, Any], prefix: str = "") -> list[str]:
    """Every key of `data` (recursively, through nested settings and lists of them) that `model` does
    not have, as "unknown key 'paper.startng_balance' (did you mean 'starting_balance'?)"."""
    out: list[str] = []
    fields = model.model_fields
    for key, value in data.items():
        name = str(key)
        where = f"{prefix}{name}"
        if name not in fields:
            close = difflib.get_close_matches(name.lower(), list(fields), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; known keys: {', '.join(fields)}"
            out.append(f"unknown key {where!r}{hint}")
            continue
        sub, many = _model_of(fields[name].annotation)
        if sub is None:
            continue
        if many and isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    out.extend(unknown_keys(sub, item, f"{where}[{i}]."))
        elif not many and isinstance(value, dict):
            out.extend(unknown_keys(sub, value, f"{where}."))
    return out


class YamlSource(PydanticBaseSettingsSource):
    """Reads quorum.yaml (or QUORUM_CONFIG) through `read_yaml`."""

    def __call__(self) -> dict[str, Any]:
        path = yaml_path()
        return {} if path is None else read_yaml(path)

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:  # pragma: no cover
        return None, field_name, False


def _env_names() -> set[str]:
    """QUORUM_* names set in the environment or in ./.env (upper case)."""
    names = {k.upper() for k in os.environ if k.upper().startswith("QUORUM_")}
    env_file = Path.cwd() / ".env"
    if env_file.is_file():
        try:
            from dotenv import dotenv_values

            names |= {k.upper() for k in dotenv_values(env_file) if k and k.upper().startswith("QUORUM_")}
        except Exception:  # noqa: BLE001 - pydantic-settings reports an unreadable .env itself
            pass
    return names


def _in_yaml(data: Any, loc: tuple[Any, ...]) -> bool:
    for part in loc:
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return False
    return True


def _source(loc: tuple[Any, ...], overrides: dict[str, Any], env: set[str], yaml_data: dict[str, Any],
            path: Path | None) -> str:
    """Where the bad value came from: an argument, the environment variable, the file's key."""
    if loc and loc[0] in overrides:
        return "argument"
    for i in range(len(loc), 0, -1):
        name = "QUORUM_" + "__".join(str(p) for p in loc[:i]).upper()
        if name in env:
            return name
    for i in range(len(loc), 0, -1):
        if _in_yaml(yaml_data, loc[:i]):
            key = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if j else str(p))
                          for j, p in enumerate(loc[:i]))
            return f"key {key!r} in {path}"
    return "QUORUM_" + "__".join(str(p) for p in loc).upper()


def _describe(err: Any, where: str) -> str:
    loc = ".".join(str(p) for p in err.get("loc", ()))
    value = err.get("input")
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if isinstance(value, dict | list):
        return f"setting {loc!r} ({where}): {msg}"
    return f"setting {loc!r} ({where}) = {value!r}: {msg}"


def load_settings(**overrides: Any) -> Settings:
    """Build Settings, turning validation errors into one ConfigError naming each bad setting and
    where its value came from."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        path = yaml_path()
        yaml_data = read_yaml(path) if path is not None else {}
        env = _env_names()
        lines = [_describe(e, _source(tuple(e.get("loc", ())), overrides, env, yaml_data, path))
                 for e in exc.errors()]
        raise ConfigError("; ".join(lines)) from None


def require_live_confirmation(settings: Settings) -> None:
    """mode=live trades real money: it needs the explicit opt-in (checked before anything runs)."""
    if settings.mode == "live" and not settings.live_trading_confirmed:
        raise ConfigError("setting 'mode' = 'live' needs QUORUM_LIVE_TRADING_CONFIRMED=true (explicit opt-in)")
