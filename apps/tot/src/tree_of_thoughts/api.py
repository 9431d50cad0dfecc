"""REST API: ``/api/v1/runs`` (start, read, list, cancel, tree as JSON and SVG) and ``/api/v1/tasks``.

Handlers are thin: the run service validates, stores and runs; its errors are problem details
already. Starting and cancelling need ``tot:run``, reading needs ``tot:read``; a caller only ever
sees its own runs (others' answer 404, exactly like missing ones).
"""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response, get, post
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, JSONBody, Parameter

from platform_common.auth import principal_of, require_scopes
from platform_common.problems import PROBLEM_JSON, Problem
from tree_of_thoughts.runs import RunPage, RunRequest, RunService, RunTree, RunView
from tree_of_thoughts.runs.models import RunStatus
from tree_of_thoughts.runs.render import render_svg
from tree_of_thoughts.tasks import TASKS

RUNS_PATH = "/api/v1/runs"


def _problems(*codes: int) -> dict[int, ResponseSpec]:
    reasons = {
        400: "Malformed request (unknown field, wrong type, bad cursor)",
        403: "The caller lacks the scope this operation needs",
        404: "No such run, or it belongs to someone else",
        409: "The run already ended",
        422: "The run cannot be started (unknown task, bad problem, budget over a cap, no LLM)",
        429: "Too many active runs for this caller",
    }
    return {
        code: ResponseSpec(data_container=Problem, description=reasons[code], media_type=PROBLEM_JSON) for code in codes
    }


class TaskInfo(msgspec.Struct):
    name: str
    description: str
    requires_llm: Annotated[bool, msgspec.Meta(description="True when the task only runs with an LLM.")]
    available: Annotated[bool, msgspec.Meta(description="Whether this server can run it now (LLM configured).")]


def api_controllers(service: RunService) -> list[type[Controller]]:
    read, run = [require_scopes("tot:read")], [require_scopes("tot:run")]

    class RunsController(Controller):
        path = RUNS_PATH
        tags = ["runs"]

        @post(
            "/",
            status_code=202,
            guards=run,
            summary="Start a run",
            description="Validates the request, queues the run and returns at once (202, Location: the run). "
            "Poll GET /api/v1/runs/{id} until status is succeeded, failed or cancelled.",
            responses=_problems(400, 403, 422, 429),
        )
        async def start(self, request: Request[Any, Any, Any], data: JSONBody[RunRequest]) -> Response[RunView]:
            started = await service.submit(data, principal_of(request).subject)
            return Response(RunView.of(started), status_code=202, headers={"Location": f"{RUNS_PATH}/{started.id}"})

        @get("/", guards=read, summary="List your runs, newest first", responses=_problems(400, 403))
        async def list_runs(
            self,
            request: Request[Any, Any, Any],
            status: Annotated[RunStatus | None, Parameter(description="Only runs with this status.")] = None,
            limit: Annotated[int, Parameter(ge=1, le=100, description="Page size.")] = 20,
            cursor: Annotated[str | None, Parameter(description="next_cursor of the previous page.")] = None,
        ) -> RunPage:
            return await service.list(principal_of(request).subject, status=status, limit=limit, cursor=cursor)

        @get(
            "/{run_id:str}",
            guards=read,
            summary="A run: status, progress, answer, stats",
            responses=_problems(403, 404),
        )
        async def get_run(self, request: Request[Any, Any, Any], run_id: FromPath[str]) -> RunView:
            return RunView.of(await service.get(run_id, principal_of(request).subject))

        @post(
            "/{run_id:str}/cancel",
            status_code=202,
            guards=run,
            summary="Cancel a run",
            description="Idempotent. The run stops after its current round (within a few seconds); "
            "poll it until status is cancelled. 409 if it already succeeded or failed.",
            responses=_problems(403, 404, 409),
        )
        async def cancel(self, request: Request[Any, Any, Any], run_id: FromPath[str]) -> RunView:
            return RunView.of(await service.cancel(run_id, principal_of(request).subject))

        @get(
            "/{run_id:str}/tree",
            guards=read,
            summary="The run's search tree (every node)",
            responses=_problems(403, 404),
        )
        async def tree(self, request: Request[Any, Any, Any], run_id: FromPath[str]) -> RunTree:
            found = await service.get(run_id, principal_of(request).subject, with_tree=True)
            return RunTree(
                run_id=found.id, status=found.status, best_node_id=found.best_node_id, nodes=found.tree or []
            )

        @get(
            "/{run_id:str}/tree.svg",
            guards=read,
            media_type="image/svg+xml",
            summary="The run's search tree drawn as SVG (best path highlighted, large trees trimmed)",
            responses=_problems(403, 404),
        )
        async def tree_svg(self, request: Request[Any, Any, Any], run_id: FromPath[str]) -> str:
            return render_svg(await service.get(run_id, principal_of(request).subject, with_tree=True))

    class TasksController(Controller):
        path = "/api/v1/tasks"
        tags = ["runs"]

        @get("/", guards=read, summary="The tasks runs can solve", responses=_problems(403))
        async def list_tasks(self) -> list[TaskInfo]:
            return [
                TaskInfo(
                    name=t.name,
                    description=t.description,
                    requires_llm=t.requires_llm,
                    available=service.llm_configured or not t.requires_llm,
                )
                for t in TASKS.values()
            ]

    return [RunsController, TasksController]
