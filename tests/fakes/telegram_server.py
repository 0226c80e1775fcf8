"""A local Telegram Bot API server for tests (stdlib only, 127.0.0.1, ephemeral port).

    with FakeTelegramServer(token="123:ABC") as tg:
        bot = Bot("123:ABC", base_url=tg.base_url)   # "http://127.0.0.1:P/bot"

Answers POST /bot<token>/getMe, /getChat, /sendMessage with Bot API JSON, records every request
(method, parsed params, raw body, content type, time) and plays scripted failures:

    tg.fail_next("sendMessage", "429", retry_after=1)   # 429 with parameters.retry_after
    tg.fail_next("sendMessage", "500", times=2)
    tg.fail_next("sendMessage", "401")                   # Unauthorized
    tg.fail_next("sendMessage", "chat_not_found")        # 400 Bad Request: chat not found
    tg.fail_next("sendMessage", "drop")                  # accept the message, then close the connection

A request with a token other than the configured one gets 401 Unauthorized.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

CHAT = {"id": -1001234567890, "type": "channel", "title": "Quorum signals", "username": "quorum_signals"}
BOT_USER = {
    "id": 123456789, "is_bot": True, "first_name": "Quorum", "username": "quorum_test_bot",
    "can_join_groups": False, "can_read_all_group_messages": False, "supports_inline_queries": False,
}


@dataclass
class RecordedRequest:
    method: str
    token: str
    params: dict[str, Any]
    body: bytes
    content_type: str
    ts: float
    status: int = 0
    message_id: int | None = None


@dataclass
class _Failure:
    kind: str
    retry_after: int = 1
    description: str | None = None


@dataclass
class FakeTelegramServer:
    token: str = "123456:TEST-token-abcdefghijklmnop"
    chats: tuple[str, ...] = ("@quorum_signals", str(CHAT["id"]))
    requests: list[RecordedRequest] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[str, deque[_Failure]] = {}
        self._next_id = 100
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ control

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    def start(self) -> FakeTelegramServer:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="fake-telegram", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeTelegramServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(self, method: str, kind: str, *, times: int = 1, retry_after: int = 1,
                  description: str | None = None) -> None:
        if kind not in ("429", "500", "502", "401", "403", "chat_not_found", "bad_request", "drop"):
            raise ValueError(kind)
        with self._lock:
            q = self._failures.setdefault(method, deque())
            for _ in range(times):
                q.append(_Failure(kind, retry_after, description))

    def calls(self, method: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if method is None or r.method == method]

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    # ------------------------------------------------------------------ behaviour

    def _take_failure(self, method: str) -> _Failure | None:
        with self._lock:
            q = self._failures.get(method)
            return q.popleft() if q else None

    def _new_message(self, params: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._next_id += 1
            mid = self._next_id
        msg: dict[str, Any] = {
            "message_id": mid,
            "date": int(time.time()),
            "chat": CHAT,
            "sender_chat": CHAT,
            "text": re.sub(r"<[^>]+>", "", str(params.get("text", ""))),
        }
        rp = params.get("reply_parameters")
        if isinstance(rp, dict) and "message_id" in rp:
            msg["reply_to_message"] = {"message_id": int(rp["message_id"]), "date": int(time.time()), "chat": CHAT}
        with self._lock:
            self.messages.append({"message_id": mid, **params})
        return msg

    def handle(self, method: str, token: str, params: dict[str, Any]) -> tuple[int, dict[str, Any] | None]:
        """Returns (HTTP status, JSON body); body None means: drop the connection."""
        if token != self.token:
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        failure = self._take_failure(method)
        if failure is not None:
            if failure.kind == "429":
                return 429, {
                    "ok": False, "error_code": 429,
                    "description": f"Too Many Requests: retry after {failure.retry_after}",
                    "parameters": {"retry_after": failure.retry_after},
                }
            if failure.kind in ("500", "502"):
                code = int(failure.kind)
                return code, {"ok": False, "error_code": code, "description": failure.description or "Internal Server Error"}
            if failure.kind == "401":
                return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
            if failure.kind == "403":
                return 403, {"ok": False, "error_code": 403,
                             "description": "Forbidden: bot is not a member of the channel chat"}
            if failure.kind == "chat_not_found":
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
            if failure.kind == "bad_request":
                return 400, {"ok": False, "error_code": 400,
                             "description": failure.description or "Bad Request: can't parse entities"}
            if failure.kind == "drop":
                if method == "sendMessage":
                    self._new_message(params)
                return 200, None
        if method == "getMe":
            return 200, {"ok": True, "result": BOT_USER}
        chat_id = str(params.get("chat_id", ""))
        if method in ("sendMessage", "getChat") and chat_id not in self.chats:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
        if method == "getChat":
            return 200, {"ok": True, "result": {
                **CHAT, "accent_color_id": 0, "max_reaction_count": 11,
                "accepted_gift_types": {"unlimited_gifts": False, "limited_gifts": False, "unique_gifts": False,
                                        "premium_subscription": False, "gifts_from_channels": False},
            }}
        if method == "sendMessage":
            if not str(params.get("text", "")).strip():
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}
            return 200, {"ok": True, "result": self._new_message(params)}
        return 404, {"ok": False, "error_code": 404, "description": "Not Found"}


def _decode(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def parse_body(body: bytes, content_type: str) -> dict[str, Any]:
    """Form-encoded or JSON bodies; JSON-looking form values (reply_parameters) are decoded."""
    if not body:
        return {}
    if "json" in content_type:
        data = json.loads(body.decode("utf-8"))
        return {k: _decode(v) for k, v in data.items()}
    if "multipart/form-data" in content_type:
        # PTB only uses multipart for uploads; parse the simple text parts
        boundary = content_type.split("boundary=", 1)[-1].strip('"').encode()
        out: dict[str, Any] = {}
        for part in body.split(b"--" + boundary):
            m = re.search(rb'name="([^"]+)"\r\n(?:[^\r\n]+\r\n)*\r\n(.*)\r\n$', part, re.S)
            if m:
                out[m.group(1).decode()] = _decode(m.group(2).decode("utf-8", "replace"))
        return out
    parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True)
    return {k: _decode(v[-1]) for k, v in parsed.items()}


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeTelegramServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the stdlib logger
        return

    def do_POST(self) -> None:  # noqa: N802
        self._serve()

    def do_GET(self) -> None:  # noqa: N802
        self._serve()

    def _serve(self) -> None:
        fake = self.server_fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        ctype = self.headers.get("Content-Type", "")
        m = re.match(r"^/bot([^/]+)/([A-Za-z]+)$", self.path.split("?", 1)[0])
        if not m:
            self._reply(404, {"ok": False, "error_code": 404, "description": "Not Found"})
            return
        token, method = m.group(1), m.group(2)
        params = parse_body(body, ctype)
        rec = RecordedRequest(method=method, token=token, params=params, body=body, content_type=ctype, ts=time.monotonic())
        status, payload = fake.handle(method, token, params)
        rec.status = status
        if payload and payload.get("ok") and isinstance(payload.get("result"), dict):
            rec.message_id = payload["result"].get("message_id")
        with fake._lock:  # noqa: SLF001
            fake.requests.append(rec)
        if payload is None:
            self.close_connection = True
            try:
                self.connection.shutdown(2)
            except OSError:
                pass
            return
        self._reply(status, payload)

    def _reply(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
