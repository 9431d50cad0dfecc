"""The REST API under ``/api/v1``: catalogue administration, search, and upstream servers.

Handlers stay thin: decode (msgspec enforces the size limits of ``models``), check the scope with a
guard, call the ``Registry``, encode. Every error is an RFC 9457 problem document.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from litestar import Controller, Request, delete, get, patch, post, put
from litestar.di import NamedDependency
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from platform_common.auth import principal_of, require_scopes
from platform_common.problems import Problem
from tool_registry import catalogue, pinning
from tool_registry.audit import AuditPage, Outcome
from tool_registry.models import (
    Approval,
    Categories,
    HistoryEntry,
    ImportResult,
    PendingTool,
    SearchRequest,
    SearchResponse,
    Server,
    ServerIn,
    Stats,
    Status,
    SyncResult,
    Tool,
    ToolImport,
    ToolIn,
    ToolPage,
    ToolPatch,
)
from tool_registry.policy import Access
from tool_registry.registry import Registry

READ = [require_scopes("registry:read")]
WRITE = [require_scopes("registry:write")]
# The audit log shows every caller's calls, hidden tools included: a scope of its own, not registry:write.
AUDIT = [require_scopes("registry:audit")]
MAX_IMPORT_ITEMS = 20_000

_DESCRIPTIONS = {
    400: "Malformed request (wrong types, unknown fields, limits exceeded)",
    401: "Missing or invalid credentials",
    403: "Missing scope, or upstream host not allowed",
    404: "No such resource",
    409: "Name already taken, or the pending version to approve changed",
    413: "Request body too large",
    422: "Semantically invalid (e.g. an input_schema that is not an object schema, an unparseable URL)",
    429: "Rate limit exceeded (see Retry-After)",
    502: "The upstream server failed",
    503: "The database is unreachable (see Retry-After)",
}
# Any operation can meet these: bad query parameters, auth, rate limits, a database outage.
_ALWAYS = (400, 401, 429, 503)


def problems(*codes: int) -> dict[int, ResponseSpec]:
    """OpenAPI entries for the problem documents a handler may answer with."""
    return {
        code: ResponseSpec(
            data_container=Problem, description=_DESCRIPTIONS[code], media_type="application/problem+json"
        )
        for code in sorted({*codes, *_ALWAYS})
    }


def actor(request: Request[Any, Any, Any]) -> str:
    return principal_of(request).subject


def access(registry: Registry, request: Request[Any, Any, Any]) -> Access:
    """The caller's rights under the policy in force (which tools it sees and may call)."""
    return registry.policy.access(principal_of(request))


class ToolController(Controller):
    path = "/api/v1/tools"
    tags = ["tools"]

    @post("/", guards=WRITE, summary="Create a tool", responses=problems(400, 403, 409, 413, 422))
    async def create_tool(
        self, data: JSONBody[ToolIn], registry: NamedDependency[Registry], request: Request[Any, Any, Any]
    ) -> Tool:
        return await registry.create(data, actor(request))

    @get("/", guards=READ, summary="List tools (keyset pagination by name)", responses=problems(400, 403))
    async def list_tools(
        self,
        registry: NamedDependency[Registry],
        request: Request[Any, Any, Any],
        category: FromQuery[str | None] = None,
        tag: Annotated[
            list[str] | None, QueryParameter(description="Only tools with all these tags (repeatable).")
        ] = None,
        status: Annotated[list[Status] | None, QueryParameter(description="Default: active and deprecated.")] = None,
        source: Annotated[str | None, QueryParameter(description="'manual' or an upstream server name.")] = None,
        cursor: Annotated[
            str | None, QueryParameter(max_length=400, description="next_cursor of the last page.")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
    ) -> ToolPage:
        async with registry.replica.connection() as conn:
            return await catalogue.list_page(
                conn,
                category=category,
                tags=tag or [],
                statuses=status or ["active", "deprecated"],
                source=source,
                cursor=cursor,
                limit=limit,
                names=access(registry, request).like_patterns(),
            )

    @post(
        "/import",
        guards=WRITE,
        status_code=200,
        responses=problems(400, 403, 413, 422),
        summary="Create or replace many tools by name, all or nothing",
        description="Items may carry a precomputed `embedding` for the configured model; the others are "
        "embedded in the background (`embeddings_pending`). Up to 20,000 items per request.",
    )
    async def import_tools(
        self,
        data: JSONBody[list[ToolImport]],
        registry: NamedDependency[Registry],
        request: Request[Any, Any, Any],
    ) -> ImportResult:
        if len(data) > MAX_IMPORT_ITEMS:
            raise catalogue.invalid(
                "Import too large", [{"key": "$", "message": f"more than {MAX_IMPORT_ITEMS} items"}]
            )
        return await registry.import_tools(data, actor(request))

    @get("/{name:str}", guards=READ, summary="Read a tool (deleted tools too)", responses=problems(403, 404))
    async def read_tool(
        self,
        name: FromPath[str],
        registry: NamedDependency[Registry],
        request: Request[Any, Any, Any],
        consistent: FromQuery[bool] = False,
    ) -> Tool:
        tool = await registry.get(name, access(registry, request), consistent=consistent)
        if tool is None:
            raise catalogue.ToolNotFound(name)
        return tool

    @put("/{name:str}", guards=WRITE, summary="Replace a tool", responses=problems(400, 403, 404, 422))
    async def replace_tool(
        self,
        name: FromPath[str],
        data: JSONBody[ToolIn],
        registry: NamedDependency[Registry],
        request: Request[Any, Any, Any],
    ) -> Tool:
        if data.name != name:
            raise catalogue.invalid("Name mismatch", [{"key": "name", "message": "must equal the name in the URL"}])
        return await registry.replace(name, data, actor(request))

    @patch("/{name:str}", guards=WRITE, summary="Change some fields of a tool", responses=problems(400, 403, 404, 422))
    async def patch_tool(
        self,
        name: FromPath[str],
        data: JSONBody[ToolPatch],
        registry: NamedDependency[Registry],
        request: Request[Any, Any, Any],
    ) -> Tool:
        return await registry.patch(name, data, actor(request))

    @delete(
        "/{name:str}", guards=WRITE, summary="Soft-delete a tool (status becomes deleted)", responses=problems(403, 404)
    )
    async def delete_tool(
        self, name: FromPath[str], registry: NamedDependency[Registry], request: Request[Any, Any, Any]
    ) -> None:
        await registry.delete(name, actor(request))

    @get("/{name:str}/history", guards=READ, summary="A tool's changes, newest first", responses=problems(403))
    async def tool_history(
        self, name: FromPath[str], registry: NamedDependency[Registry], request: Request[Any, Any, Any]
    ) -> list[HistoryEntry]:
        if not access(registry, request).sees(name):
            return []  # what an unknown name gets: no oracle for hidden tools
        async with registry.primary.connection() as conn:
            return await catalogue.history(conn, name)


class QueryController(Controller):
    path = "/api/v1"
    tags = ["search"]

    @post(
        "/search",
        guards=READ,
        status_code=200,
        responses=problems(400, 403),
        summary="Search tools by meaning and words",
        description="Scores are calibrated in [0, 1] (probability of being the right tool), so `min_score` "
        "means the same for every query. `consistent=true` reads from the primary database.",
    )
    async def search(
        self,
        data: JSONBody[SearchRequest],
        registry: NamedDependency[Registry],
        request: Request[Any, Any, Any],
        consistent: FromQuery[bool] = False,
    ) -> SearchResponse:
        return await registry.search(data, access(registry, request), consistent=consistent)

    @get("/categories", guards=READ, summary="Categories of active tools with counts", responses=problems(403))
    async def categories(self, registry: NamedDependency[Registry], request: Request[Any, Any, Any]) -> Categories:
        return await registry.categories(access(registry, request))

    @get("/stats", guards=READ, summary="Catalogue statistics", responses=problems(403))
    async def stats(self, registry: NamedDependency[Registry], request: Request[Any, Any, Any]) -> Stats:
        return await registry.stats(access(registry, request))


class ServerController(Controller):
    path = "/api/v1/servers"
    tags = ["upstream servers"]

    @post("/", guards=WRITE, summary="Register an upstream MCP server", responses=problems(403, 409, 422))
    async def register(self, data: JSONBody[ServerIn], registry: NamedDependency[Registry]) -> Server:
        return await registry.federation.register(data)

    @get("/", guards=READ, summary="List upstream servers", responses=problems(403))
    async def list_servers(self, registry: NamedDependency[Registry]) -> list[Server]:
        async with registry.primary.connection() as conn:
            return await registry.federation.servers(conn)

    @get("/{name:str}", guards=READ, summary="Read an upstream server", responses=problems(403, 404))
    async def read_server(self, name: FromPath[str], registry: NamedDependency[Registry]) -> Server:
        async with registry.primary.connection() as conn:
            return await registry.federation.server(conn, name)

    @delete(
        "/{name:str}",
        guards=WRITE,
        summary="Remove a server (its tools are soft-deleted)",
        responses=problems(403, 404),
    )
    async def remove(
        self, name: FromPath[str], registry: NamedDependency[Registry], request: Request[Any, Any, Any]
    ) -> None:
        await registry.federation.unregister(name, actor=actor(request))

    @post(
        "/{name:str}/sync",
        guards=WRITE,
        status_code=200,
        summary="Import the server's tools now",
        responses=problems(403, 404, 502),
    )
    async def sync(
        self, name: FromPath[str], registry: NamedDependency[Registry], request: Request[Any, Any, Any]
    ) -> SyncResult:
        return await registry.federation.sync(name, actor=actor(request))

    @get(
        "/{name:str}/pending",
        guards=WRITE,
        summary="Upstream tool versions waiting for review",
        description="New tools and changes of approved ones, as the upstream declared them (untrusted text: "
        "review before approving). Needs registry:write: agents never see unreviewed descriptions.",
        responses=problems(403, 404),
    )
    async def pending(self, name: FromPath[str], registry: NamedDependency[Registry]) -> list[PendingTool]:
        async with registry.primary.connection() as conn:
            await registry.federation.server(conn, name)
            return await pinning.pending(conn, name)

    @post(
        "/{name:str}/tools/{tool:str}/approve",
        guards=WRITE,
        status_code=200,
        summary="Approve a pending version of an upstream tool",
        description="`tool` is the tool's name on the upstream; `digest` the pending version reviewed (409 if "
        "the upstream changed it since). The catalogue serves that version from now on.",
        responses=problems(403, 404, 409),
    )
    async def approve(
        self,
        name: FromPath[str],
        tool: FromPath[str],
        data: JSONBody[Approval],
        registry: NamedDependency[Registry],
        request: Request[Any, Any, Any],
    ) -> Tool:
        return await registry.federation.approve(name, tool, data.digest, actor=actor(request))


class AuditController(Controller):
    path = "/api/v1/audit"
    tags = ["audit"]

    @get(
        "/",
        guards=AUDIT,
        summary="The call_tool audit log, newest first (cursor pagination)",
        description="One entry per call_tool: who, which tool on which upstream, the SHA-256 of the "
        "arguments' canonical JSON (never the arguments), outcome and latency. Needs `registry:audit`.",
        responses=problems(403),
    )
    async def audit_log(
        self,
        registry: NamedDependency[Registry],
        subject: FromQuery[str | None] = None,
        tool: FromQuery[str | None] = None,
        outcome: FromQuery[Outcome | None] = None,
        since: Annotated[datetime | None, QueryParameter(description="Entries at or after this time.")] = None,
        until: Annotated[datetime | None, QueryParameter(description="Entries before this time.")] = None,
        cursor: Annotated[
            str | None, QueryParameter(max_length=400, description="next_cursor of the last page.")
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 100,
    ) -> AuditPage:
        return await registry.audit.page(
            subject=subject, tool=tool, outcome=outcome, since=since, until=until, cursor=cursor, limit=limit
        )


CONTROLLERS = [ToolController, QueryController, ServerController, AuditController]
