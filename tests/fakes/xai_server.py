"""A fake of xAI's gRPC Chat service for the real xai-sdk client (insecure loopback)."""

from __future__ import annotations

import json
import uuid
from concurrent import futures
from typing import Any

from tests.fakes.llm_base import FakeLLMServer, RecordedRequest

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


