"""The ccxt client for live trading: credentials (QUORUM_EXCHANGE_* or a Prefect Secret block; never logged,
printed or stored), sandbox mode, and QUORUM_EXCHANGE_API_BASE (every REST call to another base URL)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import ccxt

from core.errors import ConfigError
from exchange.capabilities import capabilities_for


def point_api_at(client: Any, base: str) -> None:
    """Send every REST call of a ccxt client to `base` (scheme://host:port), keeping each endpoint's path
    (Binance's `/fapi/v1` prefixes live in the URL, Bybit's in the request path)."""
    base = base.rstrip("/")

    def fix(url: Any) -> Any:
        if isinstance(url, dict):
            return {k: fix(v) for k, v in url.items()}
        if not isinstance(url, str):
            return url
        return base + urlsplit(url.replace("{hostname}", "host")).path.rstrip("/")

    client.urls["api"] = fix(client.urls["api"])


def _credentials(settings: Any) -> dict[str, str]:
    creds: dict[str, str] = {}
    if settings.exchange_secret_block:
        try:
            from prefect.blocks.system import Secret

            value = Secret.load(settings.exchange_secret_block).get()
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(f"QUORUM_EXCHANGE_SECRET_BLOCK={settings.exchange_secret_block!r}: cannot load the "
                              f"Prefect Secret block ({type(exc).__name__})") from None
        if not isinstance(value, dict):
            raise ConfigError(f"Prefect Secret block {settings.exchange_secret_block!r} must hold JSON with "
                              "api_key, secret (and password)")
        creds = {k: str(value[k]) for k in ("api_key", "secret", "password") if value.get(k)}
    for name in ("api_key", "secret", "password"):
        v = getattr(settings, f"exchange_{name}")
        if v is not None and v.get_secret_value().strip():  # an empty or blank value is a missing one
            creds[name] = v.get_secret_value().strip()
    return {k: v for k, v in creds.items() if v.strip()}


def build_client(settings: Any) -> Any:
    """A ccxt client for live trading; ConfigError naming what is missing (never echoing a key)."""
    if settings.mode != "live" or not settings.live_trading_confirmed:
        raise ConfigError("live trading needs QUORUM_MODE=live and QUORUM_LIVE_TRADING_CONFIRMED=true")
    caps = capabilities_for(settings.exchange)
    creds = _credentials(settings)
    missing = [f"QUORUM_EXCHANGE_{k.upper()}" for k in ("api_key", "secret") if not creds.get(k)]
    if caps.needs_password and not creds.get("password"):
        missing.append("QUORUM_EXCHANGE_PASSWORD")
    if missing:
        raise ConfigError(f"live trading on {settings.exchange} needs {', '.join(missing)} (or "
                          "QUORUM_EXCHANGE_SECRET_BLOCK naming a Prefect Secret block)")
    cfg: dict[str, Any] = {"apiKey": creds["api_key"], "secret": creds["secret"], "enableRateLimit": True,
                           "timeout": settings.exchange_timeout_ms, "options": dict(caps.options)}
    if creds.get("password"):
        cfg["password"] = creds["password"]
    client = getattr(ccxt, settings.exchange)(cfg)
    if settings.exchange_sandbox:
        client.set_sandbox_mode(True)
    if settings.exchange_api_base:
        point_api_at(client, settings.exchange_api_base)
    return client


def _scrub(text: str, settings: Any) -> str:
    """`text` with any credential replaced (an exchange's or a proxy's error body may echo what it got)."""
    for v in _credentials(settings).values():
        if len(v) >= 4:
            text = text.replace(v, "***")
    return text


def check_credentials(settings: Any, client: Any = None) -> None:
    """Before a live run starts: the keys are set (build_client names what is missing) and the exchange
    accepts them, by one balance read (reads only: nothing is placed, no setting is changed). One
    ConfigError line otherwise, never echoing a key: refused credentials, or an exchange that cannot be
    reached."""
    import ccxt

    from core.errors import TransientError
    from exchange.ccxt_errors import translate

    client = client if client is not None else build_client(settings)
    last: BaseException | None = None
    for _ in range(2):  # one retry of a transient failure; refused keys are never retried
        try:
            client.fetch_balance()
            return
        except ccxt.BaseError as exc:
            err = translate(exc, settings.exchange)
        if not isinstance(err, TransientError):
            if isinstance(err, ConfigError):
                raise err from None
            raise ConfigError(_scrub(f"{settings.exchange}: the balance read that checks the API keys failed: "
                                     f"{err}", settings)) from None
        last = err
    raise ConfigError(_scrub(f"cannot reach the exchange {settings.exchange!r} to check the API keys ({last}); check "
                             "the network and QUORUM_EXCHANGE_API_BASE / QUORUM_EXCHANGE_SANDBOX", settings)) from None
