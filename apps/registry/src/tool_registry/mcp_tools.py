"""The registry's MCP tools and resources."""

from __future__ import annotations

import msgspec
from platform_common.db import Database
from platform_common.mcp import McpApp, McpTool, ToolContext

from tool_registry import __version__
from tool_registry.config import RegistrySettings


class NoArguments(msgspec.Struct, forbid_unknown_fields=True):
    """The tool takes no arguments."""


class CatalogueStats(msgspec.Struct):
    total: int
    active: int
    deprecated: int
    deleted: int


def build_mcp(settings: RegistrySettings, database: Database) -> McpApp:
    async def catalogue_stats(_: NoArguments, ctx: ToolContext) -> CatalogueStats:
        async with database.connection() as conn:
            rows = await conn.fetch("SELECT status, count(*) AS n FROM tools GROUP BY status")
        counts = {row["status"]: row["n"] for row in rows}
        return CatalogueStats(
            total=sum(counts.values()), active=counts.get("active", 0),
            deprecated=counts.get("deprecated", 0), deleted=counts.get("deleted", 0),
        )

    return McpApp(
        name="tool-registry",
        version=__version__,
        instructions="Search the tool catalogue, read one tool's schema, and call tools through the registry.",
        tools=[
            McpTool(
                name="catalogue_stats",
                title="Catalogue statistics",
                description="How many tools the registry holds, by status (active, deprecated, deleted).",
                arguments=NoArguments,
                result=CatalogueStats,
                handler=catalogue_stats,
            ),
        ],
        allowed_hosts=settings.mcp_allowed_hosts,
        max_request_bytes=settings.max_request_bytes,
    )
