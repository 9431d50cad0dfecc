"""uvicorn's httptools HTTP/1.1 protocol with a bound on the request head (431 above it).

httptools (llhttp, C) parses a request with a fraction of h11's CPU, but uvicorn enforces no header
size limit with it: it accepted 8 MiB of headers, buffering them all. This subclass counts the head
twice: exactly (request target, names and values) as the parser reports each header, and roughly
(bytes received while the head is incomplete) so an endless header is refused after ``MAX_HEAD_BYTES``
plus one read, before the parser has buffered it. Either answers 431 and closes the connection,
before the app sees the request.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

# The request line plus every header. Bearer tokens and cookies fit many times over.
MAX_HEAD_BYTES = 32 * 1024
_BODY = b"Request header fields too large.\n"
_RESPONSE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"content-length: " + str(len(_BODY)).encode() + b"\r\n"
    b"connection: close\r\n\r\n" + _BODY
)


class HeadTooLarge(Exception):
    """Raised from a parser callback; httptools turns it into a parser error that ends the request."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` refusing request heads over ``MAX_HEAD_BYTES`` with 431."""

    max_head_bytes = MAX_HEAD_BYTES

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = True  # a connection starts with a request head
        self._head_received = 0  # bytes read while the head was incomplete
        self._head_bytes = 0  # exact size of the head parsed so far
        self._head_too_large = False

    def data_received(self, data: bytes) -> None:
        if self._in_head:
            self._head_received += len(data)
        super().data_received(data)
        # Checked after parsing: one read may hold a small head and a large body.
        if self._in_head and self._head_received > self.max_head_bytes and not self.transport.is_closing():
            self._refuse()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)  # ": " and CRLF
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_received = 0
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # the next request on this connection

    def send_400_response(self, msg: str) -> None:
        # uvicorn answers every parser error with 400; ours (HeadTooLarge from a callback) is a 431.
        if self._head_too_large:
            self._refuse()
        else:
            super().send_400_response(msg)

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_head_bytes:
            self._head_too_large = True
            raise HeadTooLarge

    def _refuse(self) -> None:
        self._head_too_large = True
        self.logger.warning("request head larger than %d bytes refused (431)", self.max_head_bytes)
        self.transport.write(_RESPONSE)
        self.transport.close()
