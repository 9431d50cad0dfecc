"""The Tree-of-Thoughts server's MCP tools and resources.

``solve`` runs a search to the end in one call (with progress notifications when the client asks
for them); ``start_run``/``get_run``/``cancel_run``/``list_runs`` drive long runs the way the REST
API does, and ``tot://runs/{id}/tree`` serves a run's tree. Every tool checks its scope and acts for
``principal.subject``, so MCP callers see exactly the runs they see over REST.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

from platform_common.mcp import McpApp, McpResource, McpTool, ToolContext, rebinding_guard, require_scope
from tree_of_thoughts import __version__
from tree_of_thoughts.config import TotSettings
from tree_of_thoughts.runs import RunPage, RunRequest, RunService, RunTree, RunView
from tree_of_thoughts.runs.models import RunStatus
from tree_of_thoughts.tasks import TASKS

STRATEGIES = ("bfs", "dfs", "best_first")
EVALUATORS = ("value", "vote", "heuristic", "hybrid")
TREE_URI = re.compile(r"^tot://runs/([^/]+)/tree$")


class NoArguments(msgspec.Struct, forbid_unknown_fields=True):
    """The tool takes no arguments."""


class RunId(msgspec.Struct, forbid_unknown_fields=True):
    run_id: Annotated[str, msgspec.Meta(max_length=64, description="The run's id, as start_run returned it.")]


class ListArguments(msgspec.Struct, forbid_unknown_fields=True):
    status: Annotated[RunStatus, msgspec.Meta(description="Only runs with this status.")] | None = None
    limit: Annotated[int, msgspec.Meta(ge=1, le=100, description="Page size.")] = 20
    cursor: Annotated[str, msgspec.Meta(max_length=200, description="next_cursor of the previous page.")] | None = None


class Capabilities(msgspec.Struct):
    strategies: list[str]
    evaluators: list[str]
    default_evaluator: str
    max_depth: int
    llm_configured: bool
    tasks: list[str]


def build_mcp(settings: TotSettings, runs: RunService) -> McpApp:
    guard = rebinding_guard(settings.mcp_allowed_hosts, settings.host, settings.port)

    async def list_strategies(_: NoArguments, ctx: ToolContext) -> Capabilities:
        ctx.require("tot:read")  # what this server can do is for its callers, not for any token
        return Capabilities(
            strategies=list(STRATEGIES),
            evaluators=list(EVALUATORS),
            default_evaluator=settings.evaluation_strategy,
            max_depth=settings.max_thoughts_depth,
            llm_configured=runs.llm_configured,
            tasks=[name for name, task in TASKS.items() if runs.llm_configured or not task.requires_llm],
        )

    async def solve(args: RunRequest, ctx: ToolContext) -> RunView:
        owner = ctx.require("tot:run").subject

        async def progress(value: float, message: str) -> None:
            await ctx.report_progress(value, 1.0, message)

        run = await runs.submit(args, owner, on_progress=progress)
        try:
            return RunView.of(await runs.wait(run.id, owner))
        except BaseException:
            # The caller went away (or the request was cancelled): nobody will read this answer.
            runs.abandon(run.id)
            raise

    async def start_run(args: RunRequest, ctx: ToolContext) -> RunView:
        return RunView.of(await runs.submit(args, ctx.require("tot:run").subject))

    async def get_run(args: RunId, ctx: ToolContext) -> RunView:
        return RunView.of(await runs.get(args.run_id, ctx.require("tot:read").subject))

    async def cancel_run(args: RunId, ctx: ToolContext) -> RunView:
        return RunView.of(await runs.cancel(args.run_id, ctx.require("tot:run").subject))

    async def list_runs(args: ListArguments, ctx: ToolContext) -> RunPage:
        owner = ctx.require("tot:read").subject
        return await runs.list(owner, status=args.status, limit=args.limit, cursor=args.cursor)

    async def read_tree(uri: str, principal: Any) -> str:
        match = TREE_URI.match(uri)
        assert match is not None
        run = await runs.get(match[1], require_scope(principal, "tot:read").subject, with_tree=True)
        tree = RunTree(run_id=run.id, status=run.status, best_node_id=run.best_node_id, nodes=run.tree or [])
        return msgspec.json.encode(tree).decode()

    run_tools: list[McpTool[Any]] = [
        McpTool(
            name="solve",
            title="Solve a problem",
            description="Search a tree of thoughts for an answer and return it when the search ends (this can "
            "take minutes; progress notifications are sent when the request has a progress token). Tasks: "
            "'game24' (four numbers, e.g. '4 9 10 13', no LLM needed) and 'generic' (any problem, needs the "
            "server's LLM). The run is kept: read its tree at tot://runs/{id}/tree.",
            arguments=RunRequest,
            result=RunView,
            handler=solve,
            read_only=False,
            idempotent=False,
        ),
        McpTool(
            name="start_run",
            title="Start a run",
            description="Start the same search as solve, but return at once with the run id; poll get_run until "
            "status is succeeded, failed or cancelled.",
            arguments=RunRequest,
            result=RunView,
            handler=start_run,
            read_only=False,
            idempotent=False,
        ),
        McpTool(
            name="get_run",
            title="Get a run",
            description="A run's status, progress, answer and statistics.",
            arguments=RunId,
            result=RunView,
            handler=get_run,
        ),
        McpTool(
            name="cancel_run",
            title="Cancel a run",
            description="Stop a queued or running run; it keeps its partial tree. Cancelling again is harmless; "
            "a run that already succeeded or failed cannot be cancelled.",
            arguments=RunId,
            result=RunView,
            handler=cancel_run,
            read_only=False,
            destructive=False,
            idempotent=True,
        ),
        McpTool(
            name="list_runs",
            title="List runs",
            description="Your runs, newest first; pass next_cursor back to page.",
            arguments=ListArguments,
            result=RunPage,
            handler=list_runs,
        ),
        McpTool(
            name="list_strategies",
            title="Search strategies",
            description="The search strategies, evaluators and tasks this server supports, and its limits.",
            arguments=NoArguments,
            result=Capabilities,
            handler=list_strategies,
        ),
    ]
    return McpApp(
        name="tree-of-thoughts",
        version=__version__,
        instructions="Solve hard problems by deliberate search over thoughts: call solve, or start_run and "
        "poll get_run for long searches.",
        tools=run_tools,
        resources=[
            McpResource(
                uri="tot://runs/{id}/tree",
                name="run-tree",
                description="A run's search tree as JSON: every node with its state, thought, score, parent, "
                "depth, pruned and on_best_path. Empty until the run ends.",
                reader=read_tree,
                template=True,
                matches=lambda uri: TREE_URI.match(uri) is not None,
            )
        ],
        allowed_hosts=guard.hosts,
        allowed_origins=guard.origins,
        max_request_bytes=settings.max_request_bytes,
    )
