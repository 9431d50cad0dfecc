"""The registry's MCP face: find, read, list and call tools; categories and stats as resources.

Every tool checks its scope on the caller's principal (``registry:read``, or ``registry:call`` for
``call_tool``), sees only the tools the policy shows that principal (``tool_registry.policy``), and
reports failures as error results the model can act on. ``find_tools``'s
description lists the live categories (refreshed at most every 30 s), so an agent can pass a
valid ``category`` without a round trip.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

import msgspec

from platform_common.auth import Principal
from platform_common.mcp import (
    McpApp,
    McpResource,
    McpTool,
    ToolContext,
    ToolError,
    principal_var,
    rebinding_guard,
    require_scope,
)
from tool_registry import __version__, catalogue
from tool_registry.federation import CallResult, UpstreamError
from tool_registry.models import (
    Categories,
    Category,
    Name,
    Query,
    SearchHit,
    SearchRequest,
    SearchResponse,
    Tag,
    Tool,
    ToolPage,
)
from tool_registry.registry import Registry

Described = TypeVar("Described", Tool, SearchHit)

FIND_TOOLS = (
    "Find the tools that can serve a request, best first. Describe the task in plain words "
    "(e.g. 'convert a PDF to text'); each result has a score in [0, 1] (≥ 0.5: likely a match). "
    "Then read one with get_tool and run it with call_tool."
)


class NoArguments(msgspec.Struct, forbid_unknown_fields=True):
    """The tool takes no arguments."""


class FindArguments(msgspec.Struct, forbid_unknown_fields=True):
    query: Annotated[Query, msgspec.Meta(description="What the user wants done, in plain words.")]
    limit: Annotated[int, msgspec.Meta(ge=1, le=50, description="How many tools to return.")] = 5
    category: Annotated[Category, msgspec.Meta(description="Only tools of this category.")] | None = None
    tags: Annotated[list[Tag], msgspec.Meta(max_length=32, description="Only tools with all these tags.")] = (
        msgspec.field(default_factory=list)
    )


class GetArguments(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[Name, msgspec.Meta(description="The tool's name, as find_tools returned it.")]


class ListArguments(msgspec.Struct, forbid_unknown_fields=True):
    category: Annotated[Category, msgspec.Meta(description="Only tools of this category.")] | None = None
    cursor: Annotated[str, msgspec.Meta(max_length=400, description="next_cursor of the previous page.")] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=100, description="Page size.")] = 50


class CallArguments(msgspec.Struct, forbid_unknown_fields=True):
    name: Annotated[Name, msgspec.Meta(description="The tool to call.")]
    arguments: Annotated[
        dict[str, Any], msgspec.Meta(description="The tool's arguments; they must match its input_schema.")
    ] = msgspec.field(default_factory=dict)


def marked(entry: Described) -> Described:
    """``entry`` with an upstream's description prefixed by its origin.

    Models read descriptions as instructions; the prefix tells them which text an upstream server
    wrote (``provenance`` says the same to programs). REST returns the stored text unchanged, so
    what admins edit and approve is never rewritten.
    """
    if entry.provenance is None:
        return entry
    return msgspec.structs.replace(
        entry, description=f"[from upstream {entry.provenance.upstream}] {entry.description}"
    )


def build_mcp(registry: Registry) -> McpApp:
    settings = registry.settings
    guard = rebinding_guard(settings.mcp_allowed_hosts, settings.host, settings.port)

    async def find_tools(args: FindArguments, ctx: ToolContext) -> SearchResponse:
        principal = ctx.require("registry:read")
        request = SearchRequest(query=args.query, limit=args.limit, category=args.category, tags=args.tags)
        found = await registry.search(request, registry.policy.access(principal))
        return msgspec.structs.replace(found, results=[marked(hit) for hit in found.results])

    async def get_tool(args: GetArguments, ctx: ToolContext) -> Tool:
        principal = ctx.require("registry:read")
        tool = await registry.get(args.name, registry.policy.access(principal))
        if tool is None:
            raise ToolError(f"No tool named '{args.name}'. Use find_tools to discover tool names.")
        return marked(tool)

    async def list_tools(args: ListArguments, ctx: ToolContext) -> ToolPage:
        principal = ctx.require("registry:read")
        names = registry.policy.access(principal).like_patterns()
        async with registry.replica.connection() as conn:
            page = await catalogue.list_page(
                conn, category=args.category, cursor=args.cursor, limit=args.limit, names=names
            )
        return msgspec.structs.replace(page, tools=[marked(tool) for tool in page.tools])

    async def list_categories(_: NoArguments, ctx: ToolContext) -> Categories:
        principal = ctx.require("registry:read")
        return await registry.categories(registry.policy.access(principal))

    async def call_tool(args: CallArguments, ctx: ToolContext) -> CallResult:
        principal = ctx.require("registry:call")
        try:
            return await registry.call_tool(principal, args.name, args.arguments)
        except UpstreamError as exc:
            raise ToolError(str(exc)) from None

    async def tool_descriptions() -> dict[str, str]:
        # tools/list has no tool context; the caller's principal is the one the route set for this request.
        principal = principal_var.get()
        if not isinstance(principal, Principal) or not principal.has("registry:read"):
            return {}  # the catalogue's category names are for callers who may read it
        categories = await registry.categories(registry.policy.access(principal), cached=True)
        names = ", ".join(c.name for c in categories.categories[:50]) or "none yet"
        return {"find_tools": f"{FIND_TOOLS} Categories: {names}."}

    async def read_categories(_: str, principal: Any) -> str:
        caller = require_scope(principal, "registry:read")
        return msgspec.json.encode(await registry.categories(registry.policy.access(caller))).decode()

    async def read_stats(_: str, principal: Any) -> str:
        caller = require_scope(principal, "registry:read")
        return msgspec.json.encode(await registry.stats(registry.policy.access(caller))).decode()

    return McpApp(
        name="tool-registry",
        version=__version__,
        instructions=(
            "A catalogue of tools. Call find_tools with the user's request to discover tools, get_tool to read "
            "one's input schema, and call_tool to run it through the registry."
        ),
        tools=[
            McpTool(
                name="find_tools",
                title="Find tools",
                description=FIND_TOOLS,
                arguments=FindArguments,
                result=SearchResponse,
                handler=find_tools,
            ),
            McpTool(
                name="get_tool",
                title="Get a tool",
                arguments=GetArguments,
                result=Tool,
                handler=get_tool,
                description="One tool's full entry: description, input and output schemas, annotations.",
            ),
            McpTool(
                name="list_tools",
                title="List tools",
                arguments=ListArguments,
                result=ToolPage,
                handler=list_tools,
                description="Active and deprecated tools in name order, a page at a time.",
            ),
            McpTool(
                name="list_categories",
                title="List categories",
                arguments=NoArguments,
                result=Categories,
                handler=list_categories,
                description="Categories of active tools with their tool counts.",
            ),
            McpTool(
                name="call_tool",
                title="Call a tool",
                arguments=CallArguments,
                result=CallResult,
                handler=call_tool,
                read_only=False,
                destructive=True,
                idempotent=False,
                open_world=True,
                description="Run a catalogued tool on the upstream MCP server that provides it. The "
                "arguments are checked against the tool's input_schema first.",
            ),
        ],
        resources=[
            McpResource(
                uri="registry://categories",
                name="categories",
                reader=read_categories,
                description="Categories of active tools with their counts (JSON).",
            ),
            McpResource(
                uri="registry://stats",
                name="stats",
                reader=read_stats,
                description="Catalogue statistics: tools by status and source, embedding models (JSON).",
            ),
        ],
        allowed_hosts=guard.hosts,
        allowed_origins=guard.origins,
        max_request_bytes=settings.max_request_bytes,
        tool_descriptions=tool_descriptions,
    )
