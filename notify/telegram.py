"""Telegram channel sink on python-telegram-bot 22 (`telegram.Bot`, Bot API over HTTPS).

`TelegramSink` is synchronous for its callers: it owns a private asyncio event loop running in a
daemon thread, opened for a delivery batch (`open()` … `close()`, or `with sink:`) and used by every
`send()` of that batch, so one `Bot` (one HTTP connection pool, one getMe) serves the whole batch and
the sink works the same from plain code, Prefect tasks or a thread that already runs an event loop.

Error handling of one send:

- `RetryAfter` (HTTP 429): waited out, if the wait is at most `max_retry_after_s`, up to `max_tries`.
- network errors where the request cannot have reached Telegram (connect error/timeout, pool
  timeout) and 5xx answers: retried with exponential backoff, up to `max_tries` in all.
- a failure after the request may have reached Telegram (read timeout, connection dropped before
  the answer) during sendMessage: `DeliveryUncertain`, never retried here (retrying could post twice).
- bad token (401/404), bot not allowed in the channel (403), chat not found, group migrated:
  `DeliveryConfigError` with a message that names the problem and the fix; the sink remembers it and
  fails fast for the rest of its life, so the problem is reported once per batch, not once per post.
- any other 400 (e.g. malformed HTML): `DeliveryRejected` (that post will never go through as is).

No error message ever contains the token: everything is passed through `scrub()`.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Protocol, TypeVar

import httpx
from telegram import Bot, LinkPreviewOptions, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
    TimedOut,
)
from telegram.warnings import PTBDeprecationWarning

from core.errors import ConfigError, QuorumError

T = TypeVar("T")

# PTB 22 warns inside RetryAfter() itself that `retry_after` will become a timedelta; we read both forms.
warnings.filterwarnings("ignore", message=r".*`retry_after` will be of type", category=PTBDeprecationWarning)

TOKEN_FIX = "Fix: set QUORUM_TELEGRAM_TOKEN to the token @BotFather gave the bot (or unset it to post to the console)."
CHAT_FIX = (
    "Fix: set QUORUM_TELEGRAM_CHANNEL to the channel's @username or numeric id (-100…) and add the bot "
    "to the channel as an administrator allowed to post messages."
)


class DeliveryError(QuorumError):
    """A post could not be delivered."""


class DeliveryConfigError(DeliveryError, ConfigError):
    """Bad token, missing channel or missing rights: no post can go through until the setting is fixed."""


class DeliveryRejected(DeliveryError):
    """Telegram refused this particular message (it will never go through as it is)."""


class DeliveryTransient(DeliveryError):
    """Temporary failure that outlasted the retries (network, 5xx, long flood wait); try again later."""


class DeliveryUncertain(DeliveryError):
    """The request may have reached Telegram but no answer came back: the post may or may not be out."""


class Sink(Protocol):
    """What notify.delivery needs from a sink."""

    name: str
    chat_id: str | None
    records_delivery: bool  # True when send() returns a real message id that may be stored

    def send(self, text: str, reply_to_message_id: int | None = None) -> int | None: ...


def _seconds(value: int | float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def retry_after_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB 22 deprecates the int form; accept both
        warnings.simplefilter("ignore")
        return _seconds(exc.retry_after)


_SAFE_CAUSES = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.WriteTimeout, httpx.WriteError)


def request_never_reached(exc: NetworkError) -> bool:
    """True when the failure happened before Telegram could have acted on the request.

    PTB raises NetworkError/TimedOut `from` the httpx error for transport failures, and a plain
    NetworkError (no cause) for an HTTP error status such as 500/502, which we treat as 'not processed'.
    """
    cause = exc.__cause__
    if cause is None:
        return not isinstance(exc, TimedOut)
    return isinstance(cause, _SAFE_CAUSES)


class TelegramSink:
    name = "telegram"
    records_delivery = True

    def __init__(
        self,
        token: str,
        chat_id: str | int,
        base_url: str | None = None,
        *,
        max_tries: int = 3,
        backoff_s: float = 1.0,
        max_backoff_s: float = 10.0,
        max_retry_after_s: float = 60.0,
        timeout_s: float = 15.0,
        disable_previews: bool = True,
    ) -> None:
        if not token or not str(token).strip():
            raise DeliveryConfigError(f"Telegram token is empty. {TOKEN_FIX}")
        if chat_id is None or not str(chat_id).strip():
            raise DeliveryConfigError(f"Telegram channel is not set. {CHAT_FIX}")
        self._token = str(token).strip()
        self.chat_id = str(chat_id).strip()
        self.base_url = base_url or "https://api.telegram.org/bot"
        self.max_tries = max(1, int(max_tries))
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_retry_after_s = max_retry_after_s
        self.timeout_s = timeout_s
        self.disable_previews = disable_previews
        self.config_error: DeliveryConfigError | None = None
        self.bot_username: str | None = None
        self.waited_s = 0.0  # total time spent waiting out 429s and backoffs (for reports and tests)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._bot: Bot | None = None

    # ------------------------------------------------------------------ secrets

    def scrub(self, text: object) -> str:
        s = str(text)
        if self._token:
            s = s.replace(self._token, "<token>")
            secret = self._token.split(":", 1)[-1]
            if len(secret) >= 8:
                s = s.replace(secret, "<token>")
        return s

    def __repr__(self) -> str:
        return f"TelegramSink(chat_id={self.chat_id!r}, base_url={self.base_url!r})"

    # ------------------------------------------------------------------ loop plumbing

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="telegram-sink", daemon=True)
            thread.start()
            self._loop, self._thread = loop, thread
        return self._loop

    def _run(self, coro: Awaitable[T]) -> T:
        loop = self._ensure_loop()
        return asyncio.run_coroutine_threadsafe(coro, loop).result()  # type: ignore[arg-type]

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> None:
        """Start the batch: create the Bot and check the token (getMe). Raises DeliveryConfigError."""
        if self.config_error is not None:
            raise self.config_error
        if self._bot is not None:
            return
        self._run(self._open())

    async def _open(self) -> None:
        bot = Bot(self._token, base_url=self.base_url)
        try:
            await self._call(bot.initialize, idempotent=True)
        except BaseException:
            try:
                await bot.shutdown()
            except Exception:  # noqa: BLE001 - closing a half-open client
                pass
            raise
        self._bot = bot
        try:
            self.bot_username = bot.username
        except RuntimeError:  # pragma: no cover - not initialised
            self.bot_username = None

    def close(self) -> None:
        if self._loop is None:
            return
        if self._bot is not None:
            try:
                self._run(self._bot.shutdown())
            except Exception:  # noqa: BLE001 - best effort
                pass
            self._bot = None
        loop, thread = self._loop, self._thread
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
        loop.close()
        self._loop, self._thread = None, None

    def __enter__(self) -> TelegramSink:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ API

    def send(self, text: str, reply_to_message_id: int | None = None) -> int:
        """Send one HTML message to the channel; returns its message id.

        A reply uses ReplyParameters(allow_sending_without_reply=True), so a deleted parent does not
        make the reply fail.
        """
        if self.config_error is not None:
            raise self.config_error
        opened_here = self._bot is None
        if opened_here:
            self.open()
        try:
            return self._run(self._send(text, reply_to_message_id))
        finally:
            if opened_here:
                self.close()

    async def _send(self, text: str, reply_to: int | None) -> int:
        assert self._bot is not None
        bot = self._bot
        kwargs: dict[str, Any] = {"chat_id": self.chat_id, "text": text, "parse_mode": ParseMode.HTML}
        if self.disable_previews:
            kwargs["link_preview_options"] = LinkPreviewOptions(is_disabled=True)
        if reply_to is not None:
            kwargs["reply_parameters"] = ReplyParameters(message_id=int(reply_to), allow_sending_without_reply=True)
        message = await self._call(lambda: bot.send_message(**kwargs), idempotent=False)
        return int(message.message_id)

    def check(self) -> str:
        """For `quorum doctor`: token valid (getMe) and channel reachable (getChat). Raises DeliveryConfigError."""
        opened_here = self._bot is None
        self.open()
        try:
            return self._run(self._check())
        finally:
            if opened_here:
                self.close()

    async def _check(self) -> str:
        assert self._bot is not None
        bot = self._bot
        chat = await self._call(lambda: bot.get_chat(self.chat_id), idempotent=True)
        title = chat.title or chat.username or str(chat.id)
        return f"bot @{self.bot_username or '?'} can reach chat {title!r} ({chat.id})"

    # ------------------------------------------------------------------ retries and error mapping

    async def _sleep(self, seconds: float) -> None:
        self.waited_s += seconds
        await asyncio.sleep(seconds)

    async def _call(self, fn: Callable[[], Awaitable[T]], *, idempotent: bool) -> T:
        last: str = ""
        for attempt in range(1, self.max_tries + 1):
            final = attempt == self.max_tries
            try:
                return await asyncio.wait_for(fn(), timeout=self.timeout_s * 2)
            except RetryAfter as exc:
                wait = retry_after_seconds(exc)
                last = f"flood control: Telegram asked to wait {wait:g}s"
                if wait > self.max_retry_after_s or final:
                    raise DeliveryTransient(f"{last} (attempt {attempt}/{self.max_tries})") from None
                await self._sleep(wait)
            except InvalidToken:
                raise self._config(f"Telegram rejected the bot token (401/404 Unauthorized). {TOKEN_FIX}") from None
            except Forbidden as exc:
                raise self._config(
                    f"the bot may not post to chat {self.chat_id!r} ({self.scrub(exc.message)}). {CHAT_FIX}"
                ) from None
            except ChatMigrated as exc:
                raise self._config(
                    f"chat {self.chat_id!r} became a supergroup with id {exc.new_chat_id}. "
                    f"Fix: set QUORUM_TELEGRAM_CHANNEL={exc.new_chat_id}."
                ) from None
            except BadRequest as exc:
                msg = self.scrub(exc.message)
                low = msg.lower()
                if "chat not found" in low or "chat_id is empty" in low or "peer_id_invalid" in low:
                    raise self._config(f"Telegram says chat {self.chat_id!r} was not found ({msg}). {CHAT_FIX}") from None
                if "not enough rights" in low or "need administrator rights" in low:
                    raise self._config(f"the bot lacks rights in chat {self.chat_id!r} ({msg}). {CHAT_FIX}") from None
                raise DeliveryRejected(f"Telegram rejected the message: {msg}") from None
            except (NetworkError, TimeoutError) as exc:  # TimedOut is a NetworkError
                if isinstance(exc, TimeoutError):
                    desc, safe = "no answer in time", False
                else:
                    cause = exc.__cause__
                    desc = self.scrub(exc.message) + (f" ({type(cause).__name__})" if cause is not None else "")
                    safe = request_never_reached(exc)
                last = f"network error: {desc}"
                if not idempotent and not safe:
                    raise DeliveryUncertain(
                        f"{last}; the message may have been posted, so it is not retried automatically"
                    ) from None
                if final:
                    raise DeliveryTransient(f"{last} (gave up after {self.max_tries} tries)") from None
                await self._sleep(min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1)))
            except TelegramError as exc:
                raise DeliveryRejected(f"Telegram error: {self.scrub(exc.message)}") from None
        raise DeliveryTransient(last or "gave up")  # pragma: no cover - loop always returns or raises

    def _config(self, message: str) -> DeliveryConfigError:
        self.config_error = DeliveryConfigError(self.scrub(message))
        return self.config_error


def sink_from_settings(settings: Any, **kwargs: Any) -> Sink:
    """TelegramSink when a token and a channel are set, else the console sink."""
    from notify.console import ConsoleSink

    token = getattr(settings, "telegram_token", None)
    channel = getattr(settings, "telegram_channel", None)
    if token and channel:
        return TelegramSink(token, channel, getattr(settings, "telegram_base_url", None), **kwargs)
    return ConsoleSink()
