"""A scripted OpenAI-compatible ``/v1/embeddings`` server: a real HTTP test double, no monkeypatching.

Vectors are deterministic bags of hashed words, so texts sharing words are similar, and each model
has its own dimension. ``fail(model, status)`` makes that model answer with an error status until
``recover(model)``; every request is recorded (model, inputs, headers).
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import msgspec

from tests.servers import running_server

DIMENSIONS = {"m1": 8, "m2": 16}


def vector(text: str, dimension: int) -> list[float]:
    out = [0.0] * dimension
    for word in re.findall(r"\w+", text.lower()):
        out[hashlib.sha256(word.encode()).digest()[0] % dimension] += 1.0
    out[0] += 0.01  # never the zero vector
    return out


class EmbeddingDouble:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.failing: dict[str, int] = {}
        self.script: list[int] = []  # statuses to answer with next, whatever the model
        self._lock = threading.Lock()

    def count(self, model: str) -> int:
        return sum(1 for r in self.requests if r["model"] == model)

    def fail(self, model: str, status: int = 503) -> None:
        self.failing[model] = status

    def recover(self, model: str) -> None:
        self.failing.pop(model, None)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        request = msgspec.json.decode(body)
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        with self._lock:
            self.requests.append({"model": request["model"], "input": request["input"], "headers": headers})
            status = self.script.pop(0) if self.script else self.failing.get(request["model"], 200)
        if status == 200 and request["model"] not in DIMENSIONS:
            status = 404
        if status != 200:
            await _reply(send, status, {"error": {"message": "scripted failure"}})
            return
        dimension = DIMENSIONS[request["model"]]
        data = [
            {"object": "embedding", "index": i, "embedding": vector(text, dimension)}
            for i, text in enumerate(request["input"])
        ]
        await _reply(send, 200, {"object": "list", "data": data, "model": request["model"]})


async def _reply(send: Any, status: int, payload: dict[str, Any]) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": msgspec.json.encode(payload)})


@contextmanager
def embedding_double() -> Iterator[tuple[EmbeddingDouble, str]]:
    """The double and its API base URL (``.../v1``)."""
    double = EmbeddingDouble()
    with running_server(double) as url:
        yield double, f"{url}/v1"
