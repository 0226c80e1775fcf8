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
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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

Responder = Callable[[dict[str, Any]], str]


# --------------------------------------------------------------------------- behaviours


@dataclass(frozen=True)
class Behaviour:
    """One scripted reaction. kind: answer | refusal | status | delay."""

    kind: str
    text: str = ""
    status: int = 200
    retry_after: float | None = None
    delay_s: float = 0.0
    then: Behaviour | None = None
    usage: tuple[int, int] | None = None


def _text(obj: Any) -> str:
    return obj if isinstance(obj, str) else json.dumps(obj)


def answer(obj: Any, usage: tuple[int, int] | None = None) -> Behaviour:
    """A normal answer whose content is `obj` (a dict/list is JSON-encoded, a str is sent as is)."""
    return Behaviour("answer", text=_text(obj), usage=usage)


def malformed(text: str = '{"action": "LONG", "confidence": 0.8, "rationale": "trend up') -> Behaviour:
    """An answer whose text is not valid JSON (truncated by default)."""
    return Behaviour("answer", text=text)


def schema_violation(obj: Any = None) -> Behaviour:
    """Valid JSON that breaks the schema (defaults to action 'BUY!!', confidence 1.7)."""
    if obj is None:
        obj = {"action": "BUY!!", "confidence": 1.7, "rationale": "to the moon"}
    return Behaviour("answer", text=_text(obj))


def delay(seconds: float, then: Behaviour | None = None) -> Behaviour:
    """Wait `seconds` before answering with `then` (default responder when None)."""
    return Behaviour("delay", delay_s=seconds, then=then)


def rate_limited(retry_after: float | None = 2, message: str = "Rate limit reached") -> Behaviour:
    """HTTP 429 with a retry-after header (gRPC: RESOURCE_EXHAUSTED with retry-after trailer)."""
    return Behaviour("status", status=429, retry_after=retry_after, text=message)


def server_error(status: int = 500, message: str = "internal server error") -> Behaviour:
    return Behaviour("status", status=status, text=message)


def http_error(status: int, message: str = "error") -> Behaviour:
    """Any HTTP error status (401, 403, 404, 503, 529...)."""
    return Behaviour("status", status=status, text=message)


def refusal(text: str = "I can't help with that request.") -> Behaviour:
    """A refusal in the provider's own shape (anthropic stop_reason 'refusal', openai message.refusal)."""
    return Behaviour("refusal", text=text)


# --------------------------------------------------------------------------- schema examples


def example_from_schema(schema: Mapping[str, Any] | None, root: Mapping[str, Any] | None = None) -> Any:
    """A small instance that satisfies `schema` (objects, arrays, enums, bounds, $ref, anyOf)."""
    if not schema:
        return {}
    root = root if root is not None else schema
    if "$ref" in schema:
        target: Any = root
        for part in str(schema["$ref"]).lstrip("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, Mapping) else {}
        return example_from_schema(target, root)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            options = [s for s in schema[key] if s.get("type") != "null"] or schema[key]
            return example_from_schema(options[0], root)
    typ = schema.get("type")
    if isinstance(typ, list):
        typ = next((t for t in typ if t != "null"), "null")
    if typ == "object" or "properties" in schema:
        props = schema.get("properties", {})
        return {name: example_from_schema(sub, root) for name, sub in props.items()}
    if typ == "array":
        n = max(int(schema.get("minItems", 1)), 1)
        return [example_from_schema(schema.get("items", {}), root) for _ in range(n)]
    if typ in ("number", "integer"):
        lo = schema.get("minimum", schema.get("exclusiveMinimum"))
        hi = schema.get("maximum", schema.get("exclusiveMaximum"))
        if lo is not None and hi is not None:
            value = (lo + hi) / 2
        elif lo is not None:
            value = lo + 1
        elif hi is not None:
            value = hi - 1
        else:
            value = 0.5 if typ == "number" else 1
        return int(value) if typ == "integer" else float(value)
    if typ == "boolean":
        return False
    if typ == "null":
        return None
    if typ == "string":
        n = int(schema.get("minLength", 0))
        return "fake" + "x" * max(0, n - 4)
    return {}


_JSON_BLOCK = re.compile(r"```json\s*(\{.*?\})\s*```", re.S)


def schema_in_text(text: str) -> dict[str, Any] | None:
    """The first ```json {...}``` block of `text` parsed, or None."""
    m = _JSON_BLOCK.search(text or "")
    if not m:
        return None
    try:
        value = json.loads(m.group(1))
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


# --------------------------------------------------------------------------- base server


@dataclass
class RecordedRequest:
    method: str
    path: str
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON (dict) when the body was JSON, else None
    raw: bytes = b""
    at: float = field(default_factory=time.monotonic)


class FakeLLMServer:
    """Shared machinery: script queue, request log, default responder, fixed delay, lifecycle."""

    protocol = "base"

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        delay_s: float = 0.0,
        usage: tuple[int, int] = (120, 45),
        model: str | None = None,
    ):
        self.responder = responder
        self.delay_s = delay_s
        self.usage = usage
        self.model = model
        self.requests: list[RecordedRequest] = []
        self._script: deque[Behaviour] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.port: int | None = None

    # -- script -------------------------------------------------------------------------
    def enqueue(self, *behaviours: Behaviour) -> FakeLLMServer:
        with self._lock:
            self._script.extend(behaviours)
        return self

    def clear(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()

    @property
    def last_request(self) -> RecordedRequest:
        if not self.requests:
            raise AssertionError(f"{type(self).__name__} received no request")
        return self.requests[-1]

    @property
    def calls(self) -> int:
        return len(self.requests)

    def _record(self, req: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def _next(self) -> Behaviour | None:
        with self._lock:
            return self._script.popleft() if self._script else None

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _resolve(self, body: dict[str, Any]) -> Behaviour:
        """Apply the fixed delay and any scripted delays; return the behaviour to render."""
        self._sleep(self.delay_s)
        b = self._next()
        while b is not None and b.kind == "delay":
            self._sleep(b.delay_s)
            b = b.then
        if b is None:
            b = Behaviour("answer", text=self.default_answer(body))
        return b

    def _usage(self, b: Behaviour) -> tuple[int, int]:
        return b.usage or self.usage

    def default_answer(self, body: dict[str, Any]) -> str:
        if self.responder is not None:
            return self.responder(body)
        return json.dumps(example_from_schema(self.request_schema(body)))

    def request_schema(self, body: dict[str, Any]) -> dict[str, Any] | None:  # pragma: no cover
        return None

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> FakeLLMServer:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


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


# --------------------------------------------------------------------------- xAI gRPC server

_GRPC_CODES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class XAIServer(FakeLLMServer):
    """xAI's gRPC Chat service (the xai_sdk.proto module the installed Client uses), insecure loopback.

    Client: xai_sdk.Client(api_key=..., api_host=srv.api_host, use_insecure_channel=True).
    HTTP-like statuses map to gRPC codes: 429 RESOURCE_EXHAUSTED (trailer retry-after), 500 INTERNAL,
    503 UNAVAILABLE, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 NOT_FOUND.
    Requests are recorded with path "/xai_api.Chat/GetCompletion", headers from the call metadata and
    body as the request proto converted to a dict (proto field names).
    """

    protocol = "xai"

    def __init__(self, *args: Any, max_workers: int = 16, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._server: Any = None
        self._max_workers = max_workers

    @property
    def api_host(self) -> str:
        if self.port is None:
            raise RuntimeError("server not started")
        return f"127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return "http://" + self.api_host

    url = base_url

    def request_schema(self, body: dict[str, Any]) -> dict[str, Any] | None:
        rf = (body or {}).get("response_format") or {}
        if rf.get("schema"):
            try:
                return json.loads(rf["schema"])
            except ValueError:
                return None
        return None

    def start(self) -> XAIServer:
        if self._server is not None:
            return self
        import grpc
        from xai_sdk.proto import chat_pb2_grpc

        self._stopping.clear()
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=self._max_workers))
        chat_pb2_grpc.add_ChatServicer_to_server(_ChatServicer(self), server)
        self.port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._stopping.set()
        self._server.stop(grace=None).wait(2)
        self._server = None

    def complete(self, request: Any, context: Any) -> Any:
        import grpc
        from google.protobuf.json_format import MessageToDict
        from xai_sdk.proto import chat_pb2, sample_pb2, usage_pb2

        body = MessageToDict(request, preserving_proto_field_name=True)
        # keep the plain text of each message handy for responders
        for msg, pb in zip(body.get("messages", []), request.messages, strict=False):
            msg["text"] = "".join(c.text for c in pb.content)
        headers = {k.lower(): v for k, v in context.invocation_metadata() if isinstance(v, str)}
        self._record(RecordedRequest("POST", "/xai_api.Chat/GetCompletion", headers, body))
        b = self._resolve(body)
        if b.kind == "status":
            code = getattr(grpc.StatusCode, _GRPC_CODES.get(b.status, "INTERNAL"))
            if b.retry_after is not None:
                context.set_trailing_metadata((("retry-after", str(b.retry_after)),))
            context.abort(code, b.text)
        if not context.is_active():  # the client gave up (deadline)
            context.abort(grpc.StatusCode.CANCELLED, "client went away")
        pin, pout = self._usage(b)
        return chat_pb2.GetChatCompletionResponse(
            id=f"xai-{uuid.uuid4().hex[:12]}",
            model=self.model or request.model,
            outputs=[chat_pb2.CompletionOutput(
                index=0,
                finish_reason=sample_pb2.FinishReason.REASON_STOP,
                message=chat_pb2.CompletionMessage(content=b.text, role=chat_pb2.MessageRole.ROLE_ASSISTANT),
            )],
            usage=usage_pb2.SamplingUsage(prompt_tokens=pin, completion_tokens=pout, total_tokens=pin + pout,
                                          prompt_text_tokens=pin),
        )


def _make_servicer_base() -> type:
    from xai_sdk.proto import chat_pb2_grpc

    return chat_pb2_grpc.ChatServicer


class _ChatServicer(_make_servicer_base()):  # type: ignore[misc]
    def __init__(self, fake: XAIServer):
        self._fake = fake

    def GetCompletion(self, request: Any, context: Any) -> Any:  # noqa: N802 (gRPC method name)
        return self._fake.complete(request, context)


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
