"""Scriptable local LLM servers that speak each provider's real wire protocol.

Every fake binds 127.0.0.1 on an ephemeral port, records each request it receives and answers from
a script: a queue of behaviours consumed one per request, then a default responder.

    with OpenAIServer() as srv:                       # also DeepSeek and OpenRouter
        srv.enqueue(rate_limited(retry_after=2), answer({"action": "LONG", ...}))
        client = openai.OpenAI(api_key="k", base_url=srv.base_url)   # http://127.0.0.1:P/v1
        ...
        srv.requests[-1].body["response_format"]

    AnthropicServer().base_url    -> http://127.0.0.1:P          (POST /v1/messages)
    OllamaServer().base_url       -> http://127.0.0.1:P          (POST /api/chat, GET /api/tags, /api/version)
    XAIServer().api_host          -> 127.0.0.1:P                 (gRPC xai_api.Chat/GetCompletion, insecure)

Behaviours (module functions): answer(obj_or_text), malformed(text), schema_violation(obj),
delay(seconds, then=None), rate_limited(retry_after), server_error(status), http_error(status, msg),
refusal(text). `delay_s=` on a server delays every answer (e.g. six servers each answering after 1 s).
The default responder builds a schema-valid example from the JSON schema found in the request
(json_schema response_format, the forced tool's input_schema, ollama `format`, xAI response_format,
or a ```json block in the system message for json_object mode); pass `responder=` to override:
a function (request_json: dict) -> answer_text.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.llm_base import (
    Behaviour,
    FakeLLMServer,
    RecordedRequest,
    Responder,
    answer,
    delay,
    example_from_schema,
    http_error,
    malformed,
    max_in_flight,
    rate_limited,
    refusal,
    schema_in_text,
    schema_violation,
    server_error,
)
from tests.fakes.xai_server import XAIServer

__all__ = [
    "AnthropicServer",
    "Behaviour",
    "FAKE_KEYS",
    "FakeLLMServer",
    "LocalPanel",
    "OllamaServer",
    "OpenAIServer",
    "RecordedRequest",
    "XAIServer",
    "answer",
    "delay",
    "example_from_schema",
    "http_error",
    "malformed",
    "rate_limited",
    "refusal",
    "schema_violation",
    "server_error",
]

# --------------------------------------------------------------------------- HTTP servers


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # silence
        return

    def _handle(self, method: str) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        req = RecordedRequest(
            method=method,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            raw=raw,
        )
        fake = self.server.fake
        fake._record(req)
        try:
            status, headers, payload = fake.handle(req)
        except Exception as exc:  # a bug in a fake must show up as a 500, not a hang
            status, headers, payload = 500, {}, {"error": f"fake server error: {exc!r}"}
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass

    def do_POST(self) -> None:
        self._handle("POST")

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    fake: FakeHTTPServer


class FakeHTTPServer(FakeLLMServer):
    """A ThreadingHTTPServer on 127.0.0.1:0 in a daemon thread."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return self.url

    def start(self) -> FakeHTTPServer:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _HTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.fake = self
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True,
            name=f"{type(self).__name__}:{self.port}",
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self._stopping.set()  # wakes handlers sleeping in a scripted delay
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._httpd = None
        self._thread = None

    def handle(self, req: RecordedRequest) -> tuple[int, dict[str, str], Any]:
        raise NotImplementedError

    @staticmethod
    def _retry_headers(b: Behaviour) -> dict[str, str]:
        if b.retry_after is None:
            return {}
        ra = b.retry_after
        return {"retry-after": str(int(ra)) if float(ra).is_integer() else str(ra)}


class OpenAIServer(FakeHTTPServer):
    """OpenAI-compatible chat completions (OpenAI, DeepSeek, OpenRouter). base_url ends in /v1."""

    protocol = "openai"

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def request_schema(self, body: dict[str, Any]) -> dict[str, Any] | None:
        rf = (body or {}).get("response_format") or {}
        if rf.get("type") == "json_schema":
            return (rf.get("json_schema") or {}).get("schema")
        for msg in (body or {}).get("messages", []):
            if msg.get("role") == "system" and isinstance(msg.get("content"), str):
                found = schema_in_text(msg["content"])
                if found:
                    return found
        return None

    def handle(self, req: RecordedRequest) -> tuple[int, dict[str, str], Any]:
        if req.method == "GET" and req.path.rstrip("/").endswith("/models"):
            m = self.model or "fake-model"
            return 200, {}, {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "fake"}]}
        if req.method != "POST" or not req.path.rstrip("/").endswith("/chat/completions"):
            return 404, {}, {"error": {"message": f"no route {req.method} {req.path}", "type": "invalid_request_error"}}
        body = req.body or {}
        b = self._resolve(body)
        if b.kind == "status":
            etype = {429: "rate_limit_error", 401: "authentication_error", 403: "permission_error",
                     404: "not_found_error"}.get(b.status, "server_error")
            return b.status, self._retry_headers(b), {
                "error": {"message": b.text, "type": etype, "param": None, "code": etype}}
        pin, pout = self._usage(b)
        message: dict[str, Any] = {"role": "assistant", "content": b.text, "refusal": None}
        if b.kind == "refusal":
            message = {"role": "assistant", "content": None, "refusal": b.text}
        return 200, {}, {
            "id": f"chatcmpl-{uuid.uuid4().hex[:12]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model or body.get("model", "fake-model"),
            "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": pin, "completion_tokens": pout, "total_tokens": pin + pout},
        }


class AnthropicServer(FakeHTTPServer):
    """Anthropic Messages API. A JSON-object answer becomes the forced tool's tool_use input; any other
    text (e.g. malformed JSON) is sent as a text block with no tool_use."""

    protocol = "anthropic"

    def request_schema(self, body: dict[str, Any]) -> dict[str, Any] | None:
        tools = (body or {}).get("tools") or []
        chosen = ((body or {}).get("tool_choice") or {}).get("name")
        for tool in tools:
            if chosen is None or tool.get("name") == chosen:
                return tool.get("input_schema")
        return None

    def handle(self, req: RecordedRequest) -> tuple[int, dict[str, str], Any]:
        if req.method == "GET" and req.path.split("?")[0].rstrip("/").endswith("/v1/models"):
            m = self.model or "claude-fake"
            return 200, {}, {"data": [{"type": "model", "id": m, "display_name": m,
                                       "created_at": "2026-01-01T00:00:00Z"}],
                             "has_more": False, "first_id": m, "last_id": m}
        if req.method != "POST" or not req.path.split("?")[0].rstrip("/").endswith("/v1/messages"):
            return 404, {}, {"type": "error", "error": {"type": "not_found_error", "message": f"no route {req.path}"}}
        body = req.body or {}
        b = self._resolve(body)
        if b.kind == "status":
            etype = {429: "rate_limit_error", 401: "authentication_error", 403: "permission_error",
                     404: "not_found_error", 529: "overloaded_error"}.get(b.status, "api_error")
            return b.status, self._retry_headers(b), {"type": "error", "error": {"type": etype, "message": b.text}}
        pin, pout = self._usage(b)
        content: list[dict[str, Any]]
        stop_reason = "end_turn"
        if b.kind == "refusal":
            content, stop_reason = [{"type": "text", "text": b.text}], "refusal"
        else:
            try:
                parsed = json.loads(b.text)
            except ValueError:
                parsed = None
            tools = body.get("tools") or []
            if isinstance(parsed, dict) and tools:
                name = (body.get("tool_choice") or {}).get("name") or tools[0].get("name", "answer")
                content = [{"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:20]}", "name": name,
                            "input": parsed}]
                stop_reason = "tool_use"
            else:
                content = [{"type": "text", "text": b.text}]
        return 200, {}, {
            "id": f"msg_{uuid.uuid4().hex[:20]}",
            "type": "message",
            "role": "assistant",
            "model": self.model or body.get("model", "claude-fake"),
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": pin, "output_tokens": pout},
        }


class OllamaServer(FakeHTTPServer):
    """Ollama REST API: POST /api/chat, GET /api/tags, GET /api/version."""

    protocol = "ollama"

    def __init__(self, *args: Any, models: tuple[str, ...] = ("qwen3:8b",), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.models = models

    def request_schema(self, body: dict[str, Any]) -> dict[str, Any] | None:
        fmt = (body or {}).get("format")
        return fmt if isinstance(fmt, dict) else None

    def handle(self, req: RecordedRequest) -> tuple[int, dict[str, str], Any]:
        path = req.path.split("?")[0].rstrip("/")
        if req.method == "GET" and path == "/api/version":
            return 200, {}, {"version": "0.12.6"}
        if req.method == "GET" and path == "/api/tags":
            return 200, {}, {"models": [
                {"name": m, "model": m, "modified_at": "2026-01-01T00:00:00Z", "size": 1, "digest": "0" * 64,
                 "details": {"format": "gguf", "family": "qwen3", "parameter_size": "8B",
                             "quantization_level": "Q4_K_M"}} for m in self.models]}
        if req.method != "POST" or path != "/api/chat":
            return 404, {}, {"error": f"no route {req.method} {req.path}"}
        body = req.body or {}
        b = self._resolve(body)
        if b.kind == "status":
            return b.status, self._retry_headers(b), {"error": b.text}
        pin, pout = self._usage(b)
        return 200, {}, {
            "model": self.model or body.get("model", "qwen3:8b"),
            "created_at": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()),
            "message": {"role": "assistant", "content": b.text},
            "done": True,
            "done_reason": "stop",
            "total_duration": 1_000_000,
            "load_duration": 1000,
            "prompt_eval_count": pin,
            "prompt_eval_duration": 1000,
            "eval_count": pout,
            "eval_duration": 1000,
        }


# --------------------------------------------------------------------------- all six at once


FAKE_KEYS = {
    "OPENAI_API_KEY": "sk-fake-openai",
    "DEEPSEEK_API_KEY": "sk-fake-deepseek",
    "OPENROUTER_API_KEY": "sk-or-fake",
    "ANTHROPIC_API_KEY": "sk-ant-fake",
    "XAI_API_KEY": "xai-fake",
}


class LocalPanel:
    """One fake server per provider (openai, deepseek, openrouter, anthropic, ollama, xai) and the
    environment that points Quorum's registry at them:

        with LocalPanel(delay_s=1.0, responder=my_answer) as panel:
            settings/env: panel.env  (OPENAI_API_KEY, OPENAI_BASE_URL, ..., XAI_API_HOST, OLLAMA_HOST)
            panel.servers["xai"].requests
    The two anthropic members of the default panel share the anthropic server.
    """

    def __init__(self, responder: Responder | None = None, *, delay_s: float = 0.0,
                 usage: tuple[int, int] = (120, 45), ollama_models: tuple[str, ...] = ("qwen3:8b",)):
        kw: dict[str, Any] = {"responder": responder, "delay_s": delay_s, "usage": usage}
        self.servers: dict[str, FakeLLMServer] = {
            "openai": OpenAIServer(**kw),
            "deepseek": OpenAIServer(**kw),
            "openrouter": OpenAIServer(**kw),
            "anthropic": AnthropicServer(**kw),
            "ollama": OllamaServer(models=ollama_models, **kw),
            "xai": XAIServer(**kw),
        }

    def start(self) -> LocalPanel:
        for s in self.servers.values():
            s.start()
        return self

    def stop(self) -> None:
        for s in self.servers.values():
            s.stop()

    def __enter__(self) -> LocalPanel:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def env(self) -> dict[str, str]:
        s = self.servers
        return {
            **FAKE_KEYS,
            "OPENAI_BASE_URL": s["openai"].base_url,  # type: ignore[attr-defined]
            "DEEPSEEK_BASE_URL": s["deepseek"].base_url,  # type: ignore[attr-defined]
            "OPENROUTER_BASE_URL": s["openrouter"].base_url,  # type: ignore[attr-defined]
            "ANTHROPIC_BASE_URL": s["anthropic"].base_url,  # type: ignore[attr-defined]
            "OLLAMA_HOST": s["ollama"].base_url,  # type: ignore[attr-defined]
            "XAI_API_HOST": s["xai"].api_host,  # type: ignore[attr-defined]
        }

    @property
    def calls(self) -> dict[str, int]:
        return {name: s.calls for name, s in self.servers.items()}

    @property
    def max_in_flight(self) -> int:
        """How many requests the six servers held at once (see llm_base.max_in_flight)."""
        return max_in_flight(*self.servers.values())


def main(argv: list[str] | None = None) -> None:
    """Run the six fakes until Ctrl-C and print the environment that points Quorum at them:
    `python -m tests.fakes.llm_servers --delay 1`."""
    import argparse
    import shlex

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--delay", type=float, default=0.0, help="seconds before every answer")
    args = ap.parse_args(argv)
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop the servers cleanly on SIGTERM too
    from tests.fakes.panel_answers import panel_responder  # one verdict per candidate, from its math score

    with LocalPanel(delay_s=args.delay, responder=panel_responder) as panel:
        for k, v in panel.env.items():
            print(f"export {k}={shlex.quote(v)}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
