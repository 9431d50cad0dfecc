"""The httptools protocol the runner serves with: request heads over 32 KiB get 431, nothing else changes."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest

from platform_common.protocol import MAX_HEAD_BYTES, LimitedHttpToolsProtocol
from tests.servers import running_server


async def echo_length(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers with the number of body bytes it read, so a test sees the app got the whole request."""
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = str(size).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with running_server(echo_length, http=LimitedHttpToolsProtocol) as url:
        yield int(url.rsplit(":", 1)[1])


def exchange(port: int, request: bytes) -> bytes:
    """Send ``request`` and read until the server closes or 64 KiB arrived; a reset reads as b"reset"."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            return b"reset"
        return answer


def get(header_bytes: int) -> bytes:
    return b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * header_bytes + b"\r\n\r\n"


def test_heads_under_the_limit_are_served_and_keep_alive_starts_each_count_afresh(port: int) -> None:
    half = get(MAX_HEAD_BYTES // 2)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        for _ in range(3):  # 1.5 limits over one connection, no single head too large
            sock.sendall(half)
            response = b""
            while not response.endswith(b"\r\n\r\n0"):  # the app's body: 0 bytes read
                chunk = sock.recv(65536)
                assert chunk, response  # the server closed the connection
                response += chunk
            assert response.startswith(b"HTTP/1.1 200"), response[:300]


def test_a_head_over_the_limit_in_one_read_is_a_431(port: int) -> None:
    answer = exchange(port, get(MAX_HEAD_BYTES + 100))
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:300]


def test_an_endless_header_is_refused_before_it_is_all_read(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ")
        sent = 0
        try:
            while sent < 64 * 1024 * 1024:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except (ConnectionResetError, BrokenPipeError):
            pass
        # The server answered and closed while the header was still arriving.
        assert sent < 64 * 1024 * 1024
        try:
            answer = sock.recv(200)
        except ConnectionResetError:
            answer = b"reset"
    assert answer.startswith(b"HTTP/1.1 431 ") or answer in (b"", b"reset"), answer


def test_a_small_head_with_a_large_body_is_not_a_head_too_large(port: int) -> None:
    body = b"x" * (4 * MAX_HEAD_BYTES)
    request = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    answer = exchange(port, request)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(str(len(body)).encode()), answer[:300]
