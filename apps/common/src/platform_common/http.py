"""The HTTP shell both apps share: request ids, access logs, metrics, size limits, OpenAPI, errors."""

from __future__ import annotations

import html
import logging
import secrets
import time
from collections.abc import Sequence
from typing import Any

from litestar import Litestar, Request
from litestar.config.cors import CORSConfig
from litestar.enums import ScopeType
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

from platform_common import metrics
from platform_common.logs import request_id_var
from platform_common.problems import EXCEPTION_HANDLERS

logger = logging.getLogger("platform.access")

_REQUEST_ID_HEADER = b"x-request-id"
_MAX_REQUEST_ID = 128


def _incoming_request_id(scope: Scope) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == _REQUEST_ID_HEADER:
            text = value.decode("latin-1")
            # Only echo ids that are safe to put in logs and headers.
            if 0 < len(text) <= _MAX_REQUEST_ID and text.isascii() and text.isprintable():
                return text
    return None


class ObservedApp:
    """Outermost ASGI layer: one request id, one access log line and one metrics sample per request.

    It wraps the whole Litestar app so 404s, 405s and the ``/mcp`` mount are counted too; the
    route template (never the raw URL) labels the metrics, so label cardinality stays bounded.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        await self._observe(scope, receive, send)

    async def _observe(self, scope: HTTPScope, receive: Receive, send: Send) -> None:
        request_id = _incoming_request_id(scope) or secrets.token_hex(8)
        token = request_id_var.set(request_id)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((_REQUEST_ID_HEADER, request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            path = _route_template(scope)
            method = scope["method"] if scope["method"] in _METHODS else "OTHER"
            metrics.HTTP_REQUESTS.labels(method, path, str(status)).inc()
            metrics.HTTP_DURATION.labels(method, path).observe(elapsed)
            if path not in _QUIET_PATHS:
                logger.info(
                    "%s %s %d",
                    method,
                    path,
                    status,
                    extra={
                        "method": method,
                        "path": path,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 2),
                        # uvicorn put the client behind a trusted proxy here (FORWARDED_ALLOW_IPS).
                        "client": client[0] if (client := scope.get("client")) else "",
                    },
                )
            request_id_var.reset(token)


def _route_template(scope: Scope) -> str:
    if template := scope.get("path_template"):
        return str(template)
    handler = scope.get("route_handler")
    # Mounted ASGI apps (/mcp) carry no template in the scope; their handler knows its path.
    return next(iter(handler.paths), "<unmatched>") if handler is not None else "<unmatched>"


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_QUIET_PATHS = frozenset({"/health", "/ready"})


# The API docs UI: one exact file of one Scalar release (MIT), checked by the browser against its
# SHA-384 (Subresource Integrity) from the npm tarball, so a changed CDN file never runs on our origin.
SCALAR_JS_URL = "https://cdn.jsdelivr.net/npm/@scalar/api-reference@1.76.0/dist/browser/standalone.js"
SCALAR_JS_INTEGRITY = "sha384-oH1C0RwqcwbVXkC+r8A+4qRoyEUQdtxAzOwumkxZtQBBcsy61FOoPt7B50OVJYYQ"


class PinnedScalarRenderPlugin(ScalarRenderPlugin):
    """Scalar from a pinned URL with an ``integrity`` attribute; nothing else from third parties.

    Litestar's page loads ``@latest`` and a stylesheet and icon from a branch (``@main``) of
    another repository, none with integrity: whoever controls them runs script next to our API.
    """

    def __init__(self, *, path: str) -> None:
        super().__init__(path=path, js_url=SCALAR_JS_URL, favicon="")

    def render(self, request: Request[Any, Any, Any], openapi_schema: dict[str, Any]) -> bytes:
        """The page: the schema URL and the pinned, integrity-checked script."""
        title = html.escape(str(openapi_schema["info"]["title"]))
        return f"""<!DOCTYPE html>
<html>
  <head>
    <title>{title}</title>
    {self.style}
    <meta charset="utf-8"/>
    <meta name="viewport" content="width=device-width, initial-scale=1">
  </head>
  <body>
    <noscript>The API reference needs JavaScript; the schema is at /schema/openapi.json.</noscript>
    <script id="api-reference" data-url="{html.escape(self.get_openapi_json_route(request))}"></script>
    <script src="{self.js_url}" integrity="{SCALAR_JS_INTEGRITY}" crossorigin="anonymous"></script>
  </body>
</html>
""".encode()


def openapi_config(title: str, version: str, description: str) -> OpenAPIConfig:
    """OpenAPI at ``/schema`` (rendered by pinned Scalar) and ``/schema/openapi.json``."""
    return OpenAPIConfig(
        title=title,
        version=version,
        description=description,
        path="/schema",
        render_plugins=[PinnedScalarRenderPlugin(path="/")],
    )


def cors_config(origins: Sequence[str]) -> CORSConfig | None:
    """CORS only for the configured origins; never ``*`` together with credentials."""
    if not origins:
        return None
    wildcard = "*" in origins
    return CORSConfig(
        allow_origins=list(origins),
        allow_credentials=not wildcard,
        allow_headers=[
            "Authorization",
            "Content-Type",
            "Mcp-Session-Id",
            "Mcp-Protocol-Version",
            "Last-Event-ID",
            "X-Request-ID",
        ],
        expose_headers=["Mcp-Session-Id", "X-Request-ID", "WWW-Authenticate", "Retry-After"],
    )


def create_app(**kwargs: Any) -> Litestar:
    """A Litestar app with the shared exception handlers; callers add routes, lifespan and config."""
    handlers = {**EXCEPTION_HANDLERS, **kwargs.pop("exception_handlers", {})}
    # logging_config=None: our own configure_logging owns the handlers.
    return Litestar(exception_handlers=handlers, logging_config=None, **kwargs)
