"""The Tree-of-Thoughts server's MCP tools and resources."""

from __future__ import annotations

import msgspec
from platform_common.mcp import McpApp, McpTool, ToolContext

from tree_of_thoughts import __version__
from tree_of_thoughts.config import TotSettings

STRATEGIES = ("bfs", "dfs", "best_first")
EVALUATORS = ("value", "vote", "heuristic", "hybrid")


class NoArguments(msgspec.Struct, forbid_unknown_fields=True):
    """The tool takes no arguments."""


class Capabilities(msgspec.Struct):
    strategies: list[str]
    evaluators: list[str]
    default_evaluator: str
    max_depth: int
    llm_configured: bool


def build_mcp(settings: TotSettings) -> McpApp:
    async def list_strategies(_: NoArguments, ctx: ToolContext) -> Capabilities:
        return Capabilities(
            strategies=list(STRATEGIES), evaluators=list(EVALUATORS),
            default_evaluator=settings.evaluation_strategy, max_depth=settings.max_thoughts_depth,
            llm_configured=bool(settings.llm_base_url),
        )

    return McpApp(
        name="tree-of-thoughts",
        version=__version__,
        instructions="Solve hard problems by deliberate search over thoughts.",
        tools=[
            McpTool(
                name="list_strategies",
                title="Search strategies",
                description="The search strategies and evaluators this server supports, and its limits.",
                arguments=NoArguments,
                result=Capabilities,
                handler=list_strategies,
            ),
        ],
        allowed_hosts=settings.mcp_allowed_hosts,
        max_request_bytes=settings.max_request_bytes,
    )
