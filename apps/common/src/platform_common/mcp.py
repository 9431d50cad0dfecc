"""Serve MCP at ``/mcp`` with the official SDK, mounted into Litestar.

Apps declare tools as typed functions (msgspec Structs in and out) and resources as readers; this
module turns them into the SDK's low-level handlers. The session manager is stateless with JSON
responses, so any replica can answer any request of a session (no sticky sessions), and it
speaks both protocol eras: the 2025 initialize handshake and the stateless 2026-07-28 discover.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, NamedTuple, TypeVar

import msgspec
from litestar import asgi
from litestar.handlers.asgi_handlers import ASGIRouteHandler
from litestar.types import HTTPResponseStartEvent, Receive, Scope, Send
from mcp import types
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError

from platform_common.auth import Principal
from platform_common.logs import request_id_var
from platform_common.problems import ProblemError
from platform_common.settings import is_loopback

logger = logging.getLogger(__name__)

# The spec's code for an unknown resource URI (the SDK has no constant for it).
RESOURCE_NOT_FOUND = -32002

ArgsT = TypeVar("ArgsT", bound=msgspec.Struct)

# Set by the auth layer for the request being served; tools read it through ToolContext.
principal_var: contextvars.ContextVar[Any] = contextvars.ContextVar("mcp_principal", default=None)


class ToolError(Exception):
    """A failure the caller can act on; its message is shown to the model as an error result."""


def struct_schema(struct: type[msgspec.Struct]) -> dict[str, Any]:
    """JSON Schema of a Struct with the object at the root, as MCP requires (``type: object``)."""
    schema = msgspec.json.schema(struct)
    defs: dict[str, Any] = schema.pop("$defs", {})
    root_name = schema["$ref"].rsplit("/", 1)[-1]
    root = dict(defs.pop(root_name))
    if defs:
        root["$defs"] = defs
    # Nested references still point at #/$defs, which now lives on the root object.
    return root


@dataclass(frozen=True)
class ToolContext:
    """What a tool needs to know about the call it serves."""

    principal: Any
    report_progress: Callable[[float, float | None, str | None], Awaitable[None]]

    def require(self, scope: str) -> Principal:
        """The caller, if it holds ``scope``; otherwise the call ends with an error result."""
        return require_scope(self.principal, scope)


def require_scope(principal: Any, scope: str) -> Principal:
    """``principal`` if it holds ``scope``; tools and resource readers call this first.

    The route's ``authenticate`` hook always sets a principal (anonymous when auth is off); none
    at all means the mount was built without one, so nobody is trusted.
    """
    if not isinstance(principal, Principal):
        raise ToolError("Not authenticated.")
    principal.require(scope)
    return principal


@dataclass(frozen=True)
class McpTool(Generic[ArgsT]):
    """One MCP tool: arguments and result are Structs, so their JSON Schemas come for free."""

    name: str
    description: str
    arguments: type[ArgsT]
    result: type[msgspec.Struct]
    handler: Callable[[ArgsT, ToolContext], Awaitable[msgspec.Struct]]
    title: str | None = None
    read_only: bool = True
    destructive: bool = False
    idempotent: bool = True
    open_world: bool = False

    def definition(self) -> types.Tool:
        return types.Tool(
            name=self.name,
            title=self.title,
            description=self.description,
            input_schema=struct_schema(self.arguments),
            output_schema=struct_schema(self.result),
            annotations=types.ToolAnnotations(
                title=self.title,
                read_only_hint=self.read_only,
                destructive_hint=self.destructive,
                idempotent_hint=self.idempotent,
                open_world_hint=self.open_world,
            ),
        )


@dataclass(frozen=True)
class McpResource:
    """A resource at a fixed URI, or a family of them when ``uri`` is an RFC 6570 template."""

    uri: str
    name: str
    description: str
    reader: Callable[[str, Any], Awaitable[str]]
    mime_type: str = "application/json"
    template: bool = False
    matches: Callable[[str], bool] | None = None


@dataclass
class McpApp:
    """The MCP face of one app: its tools and resources, served by one stateless SDK manager."""

    name: str
    version: str
    instructions: str
    tools: Sequence[McpTool[Any]] = ()
    resources: Sequence[McpResource] = ()
    allowed_hosts: Sequence[str] = ()
    allowed_origins: Sequence[str] = ()
    max_request_bytes: int = 1_048_576
    tool_descriptions: Callable[[], Awaitable[dict[str, str]]] | None = None
    _manager: StreamableHTTPSessionManager | None = field(default=None, init=False)
    _streaming_manager: StreamableHTTPSessionManager | None = field(default=None, init=False)

    def _server(self) -> Server[Any]:
        tools = {tool.name: tool for tool in self.tools}

        async def list_tools(
            ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
        ) -> types.ListToolsResult:
            definitions = [tool.definition() for tool in tools.values()]
            if self.tool_descriptions is not None:
                # Some descriptions carry live data (e.g. the registry's category list).
                live = await self.tool_descriptions()
                definitions = [
                    d.model_copy(update={"description": live.get(d.name, d.description)}) for d in definitions
                ]
            return types.ListToolsResult(tools=definitions)

        async def call_tool(
            ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams
        ) -> types.CallToolResult:
            tool = tools.get(params.name)
            if tool is None:
                raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {params.name}")
            try:
                arguments = msgspec.convert(params.arguments or {}, tool.arguments, strict=False)
            except msgspec.ValidationError as exc:
                return _error_result(f"Invalid arguments for {tool.name}: {exc}")

            async def report(progress: float, total: float | None, message: str | None) -> None:
                with contextlib.suppress(Exception):
                    await ctx.session.report_progress(progress, total, message)

            try:
                result = await tool.handler(arguments, ToolContext(principal_var.get(), report))
            except ToolError as exc:
                return _error_result(str(exc))
            except ProblemError as exc:
                # Service errors (not found, conflict, missing scope) are written for the caller.
                return _error_result(exc.problem_detail or exc.title)
            except MCPError:
                raise
            except Exception:
                logger.exception("MCP tool %s failed", tool.name)
                return _error_result(f"Internal error (request id {request_id_var.get() or 'unknown'})")
            structured = msgspec.to_builtins(result)
            return types.CallToolResult(
                content=[types.TextContent(type="text", text=msgspec.json.encode(result).decode())],
                structured_content=structured,
            )

        async def list_resources(
            ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
        ) -> types.ListResourcesResult:
            return types.ListResourcesResult(
                resources=[
                    types.Resource(uri=r.uri, name=r.name, description=r.description, mime_type=r.mime_type)
                    for r in self.resources
                    if not r.template
                ]
            )

        async def list_templates(
            ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams | None
        ) -> types.ListResourceTemplatesResult:
            return types.ListResourceTemplatesResult(
                resource_templates=[
                    types.ResourceTemplate(
                        uri_template=r.uri, name=r.name, description=r.description, mime_type=r.mime_type
                    )
                    for r in self.resources
                    if r.template
                ]
            )

        async def read_resource(
            ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
        ) -> types.ReadResourceResult:
            uri = str(params.uri)
            for resource in self.resources:
                if (resource.template and resource.matches and resource.matches(uri)) or resource.uri == uri:
                    try:
                        text = await resource.reader(uri, principal_var.get())
                    except ToolError as exc:
                        raise MCPError(code=types.INVALID_PARAMS, message=str(exc)) from exc
                    except ProblemError as exc:
                        raise MCPError(code=types.INVALID_PARAMS, message=exc.problem_detail or exc.title) from exc
                    return types.ReadResourceResult(
                        contents=[types.TextResourceContents(uri=uri, mime_type=resource.mime_type, text=text)]
                    )
            raise MCPError(code=RESOURCE_NOT_FOUND, message=f"Unknown resource: {uri}")

        return Server(
            self.name,
            version=self.version,
            instructions=self.instructions,
            on_list_tools=list_tools,
            on_call_tool=call_tool,
            on_list_resources=list_resources if self.resources else None,
            on_list_resource_templates=list_templates if self.resources else None,
            on_read_resource=read_resource if self.resources else None,
        )

    @contextlib.asynccontextmanager
    async def lifespan(self, _: Any = None) -> AsyncIterator[None]:
        """Run the SDK's session managers for the life of the app (Litestar lifespan hook).

        Two stateless managers share one server: JSON responses for ordinary requests, and an
        SSE response for a tool call that carries a progress token, since a JSON response has
        no room for the ``notifications/progress`` sent before the result.
        """
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=bool(self.allowed_hosts),
            allowed_hosts=list(self.allowed_hosts),
            allowed_origins=list(self.allowed_origins),
        )
        server = self._server()
        managers = [
            StreamableHTTPSessionManager(
                app=server,
                stateless=True,
                json_response=json_response,
                security_settings=security,
                max_request_body_size=self.max_request_bytes,
            )
            for json_response in (True, False)
        ]
        async with managers[0].run(), managers[1].run():
            self._manager, self._streaming_manager = managers
            yield
        self._manager = self._streaming_manager = None

    def route(self, authenticate: Callable[[Scope], Awaitable[Any]] | None = None) -> ASGIRouteHandler:
        """The ``/mcp`` route. ``authenticate`` returns the principal or raises an HTTP error."""

        @asgi("/mcp", is_mount=True, copy_scope=True, include_in_schema=False)
        async def mcp_endpoint(scope: Scope, receive: Receive, send: Send) -> None:
            if self._manager is None or self._streaming_manager is None:
                raise RuntimeError("the MCP session manager is not running (lifespan not entered)")
            principal = await authenticate(scope) if authenticate else None
            manager = self._manager
            if scope.get("method") == "POST":
                body, receive = await _buffer_body(receive, self.max_request_bytes)
                invalid = _invalid_envelope(body) if len(body) <= self.max_request_bytes else None
                if invalid is not None:
                    await _send_json(send, 400, invalid)
                    return
                if _wants_progress(body):
                    manager = self._streaming_manager
            token = principal_var.set(principal)
            try:
                await manager.handle_request(scope, receive, send)  # type: ignore[arg-type]
            finally:
                principal_var.reset(token)

        return mcp_endpoint


class RebindingGuard(NamedTuple):
    """The Host and Origin values ``/mcp`` accepts (empty hosts: the check is off)."""

    hosts: list[str]
    origins: list[str]


def rebinding_guard(configured: Sequence[str], host: str, port: int) -> RebindingGuard:
    """``allowed_hosts``/``allowed_origins`` for ``McpApp``: MCP_ALLOWED_HOSTS, else loopback names when local.

    A server on loopback is exactly what DNS rebinding targets (a web page in the user's browser
    resolving its own name to 127.0.0.1), so the guard is on by default there: only
    localhost/127.0.0.1/[::1] as Host, and as http Origin with our port. Listed hosts get no Origin
    (MCP clients that are not browsers send none). Elsewhere with nothing configured the check is off:
    Host names are the ingress's business, and the chart sets MCP_ALLOWED_HOSTS from its hosts.
    """
    if configured:
        return RebindingGuard(list(configured), [])
    if not is_loopback(host):
        return RebindingGuard([], [])
    names = ("localhost", "127.0.0.1", "[::1]")
    # Any port in Host (a rebinding page's Host is its own name, never a loopback one), but a browser
    # Origin only from our own port: another local web app must not drive this server.
    return RebindingGuard([*names, *(f"{name}:*" for name in names)], [f"http://{name}:{port}" for name in names])


async def _buffer_body(receive: Receive, limit: int) -> tuple[bytes, Receive]:
    """Read the request body (at most ``limit`` + 1 bytes) and return a ``receive`` that replays it.

    A body over the limit is replayed as read, so the SDK's own size check answers it.
    """
    chunks: list[bytes] = []
    size = 0
    more = True
    while more and size <= limit:
        message = await receive()
        if message["type"] != "http.request":
            return b"", _replay([message], receive)
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        more = message.get("more_body", False)
    body = b"".join(chunks)
    return body, _replay([{"type": "http.request", "body": body, "more_body": more}], receive)


def _replay(messages: list[Any], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Any:
        return pending.pop(0) if pending else await receive()

    return replayed


def _invalid_envelope(body: bytes) -> dict[str, Any] | None:
    """A JSON-RPC ``-32600 Invalid Request`` answer for a body that is JSON but not one JSON-RPC 2.0 message.

    The SDK answers these with ``-32602`` and a pydantic dump; the JSON-RPC spec names ``-32600``.
    Arrays are batches, which MCP removed in 2025-06-18 (and the SDK never accepted). Bodies that
    are not JSON at all are left to the SDK, which answers ``-32700 Parse error`` as it should.
    """
    try:
        message = msgspec.json.decode(body)
    except msgspec.DecodeError:
        return None
    except RecursionError:
        return {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": types.PARSE_ERROR, "message": "JSON nested too deeply."},
        }
    reason = None
    if isinstance(message, list):
        reason = "Batch requests are not supported: send one JSON-RPC message per request."
    elif not isinstance(message, dict):
        reason = "The body must be one JSON-RPC 2.0 message (a JSON object)."
    elif message.get("jsonrpc") != "2.0":
        reason = 'The "jsonrpc" member must be exactly "2.0".'
    elif not isinstance(message.get("method", ""), str):
        reason = 'The "method" member must be a string.'
    if reason is None:
        return None
    raw_id = message.get("id") if isinstance(message, dict) else None
    request_id = raw_id if isinstance(raw_id, str | int) and not isinstance(raw_id, bool) else None
    return {"jsonrpc": "2.0", "id": request_id, "error": {"code": types.INVALID_REQUEST, "message": reason}}


async def _send_json(send: Send, status: int, payload: dict[str, Any]) -> None:
    body = msgspec.json.encode(payload)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    start: HTTPResponseStartEvent = {"type": "http.response.start", "status": status, "headers": headers}
    await send(start)
    await send({"type": "http.response.body", "body": body, "more_body": False})


def _wants_progress(body: bytes) -> bool:
    """True for a ``tools/call`` whose ``_meta`` carries a progress token."""
    if b"progressToken" not in body:
        return False
    try:
        message = msgspec.json.decode(body)
    except (msgspec.DecodeError, RecursionError):
        return False
    if not isinstance(message, dict) or message.get("method") != "tools/call":
        return False
    params = message.get("params")
    meta = params.get("_meta") if isinstance(params, dict) else None
    return isinstance(meta, dict) and meta.get("progressToken") is not None


def _error_result(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)
