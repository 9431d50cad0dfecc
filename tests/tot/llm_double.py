"""A scripted OpenAI-compatible chat completions server for tests and benchmarks.

It is a real HTTP server (127.0.0.1, ephemeral port, background thread), so the code
under test talks to it exactly as it would talk to a provider: no monkeypatching.

    with ScriptedLLM(lambda req: "sure", delay=0.05) as llm:
        client = LLMClient(llm.base_url, model="test")
        ...
        assert llm.requests == 3 and llm.max_concurrent <= 8

A script receives the decoded request (a `ChatRequest`) and returns the reply text, a
list of texts (one per choice), or a `Reply` for full control (status, headers, usage).
When the request asks for n > 1 choices and the script returns one string, the script
is called n times, so randomised scripts give independent samples.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class ChatRequest:
    """What the client sent: the JSON body and the request headers (lower-cased names)."""

    body: dict[str, Any]
    headers: dict[str, str]

    @property
    def messages(self) -> list[dict[str, str]]:
        return list(self.body.get("messages", []))

    @property
    def prompt(self) -> str:
        """All message contents joined: what most scripts match on."""
        return "\n".join(m.get("content", "") for m in self.messages)

    @property
    def n(self) -> int:
        return int(self.body.get("n", 1))


@dataclass(frozen=True)
class Reply:
    """A fully specified reply; `texts` is ignored unless status is 200."""

    texts: list[str] = field(default_factory=list)
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


Script = Callable[[ChatRequest], "str | list[str] | Reply"]


class _Server(ThreadingHTTPServer):
    # Runs fan out dozens of concurrent calls; the default backlog of 5 would serialise them.
    request_queue_size = 256
    daemon_threads = True


def _words(text: str) -> int:
    return len(text.split())


class ScriptedLLM:
    """The server. Counters are safe to read from the test thread at any time."""

    def __init__(self, script: Script | None = None, *, delay: float = 0.0) -> None:
        self.script: Script = script or (lambda _req: "ok")
        self.delay = delay
        self.requests = 0
        self.max_concurrent = 0
        self.received: list[ChatRequest] = []
        self._in_flight = 0
        self._failures: list[Reply] = []
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def fail(self, times: int, status: int = 429, *, retry_after: str | None = None, body: str = "") -> None:
        """Answer the next `times` requests with `status` before following the script again."""
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        error_body = body or json.dumps({"error": {"message": f"scripted {status}"}})
        with self._lock:
            self._failures.extend(Reply(status=status, headers=headers, body=error_body) for _ in range(times))

    def start(self) -> ScriptedLLM:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _reply_for(self, request: ChatRequest) -> Reply:
        with self._lock:
            if self._failures:
                return self._failures.pop(0)
        result = self.script(request)
        if isinstance(result, Reply):
            return result
        if isinstance(result, str):
            texts = [result] + [_as_text(self.script(request)) for _ in range(request.n - 1)]
            return Reply(texts=texts)
        return Reply(texts=list(result))

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("Content-Length", "0"))
        raw = handler.rfile.read(length)
        request = ChatRequest(body=json.loads(raw or b"{}"), headers={k.lower(): v for k, v in handler.headers.items()})
        with self._lock:
            self.requests += 1
            self.received.append(request)
            self._in_flight += 1
            self.max_concurrent = max(self.max_concurrent, self._in_flight)
        try:
            if self.delay:
                time.sleep(self.delay)
            reply = self._reply_for(request)
        finally:
            with self._lock:
                self._in_flight -= 1
        payload = reply.body if reply.body is not None else self._completion_json(request, reply)
        data = payload.encode()
        handler.send_response(reply.status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)

    @staticmethod
    def _completion_json(request: ChatRequest, reply: Reply) -> str:
        prompt_tokens = reply.prompt_tokens if reply.prompt_tokens is not None else _words(request.prompt)
        completion_tokens = (
            reply.completion_tokens if reply.completion_tokens is not None else sum(_words(t) for t in reply.texts)
        )
        return json.dumps(
            {
                "id": "chatcmpl-scripted",
                "object": "chat.completion",
                "model": request.body.get("model", ""),
                "choices": [
                    {"index": i, "message": {"role": "assistant", "content": t}, "finish_reason": "stop"}
                    for i, t in enumerate(reply.texts)
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in separate writes; with Nagle on, keep-alive replies stall ~40 ms.
            disable_nagle_algorithm = True

            def do_POST(self) -> None:
                try:
                    server._handle(self)
                except (BrokenPipeError, ConnectionResetError):
                    # The client gave up (cancelled run): nothing to answer.
                    self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                """Keep test output quiet."""

        return Handler


def _as_text(result: str | list[str] | Reply) -> str:
    if isinstance(result, str):
        return result
    if isinstance(result, Reply):
        return result.texts[0] if result.texts else ""
    return result[0] if result else ""
