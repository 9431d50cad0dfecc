"""/api/v1/runs over real HTTP, in memory and in PostgreSQL, with one and with two replicas."""

from __future__ import annotations

import ast
import asyncio
import itertools
import operator
import tempfile
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from typing import Any
from xml.etree import ElementTree

import asyncpg
import httpx
import pytest

from platform_common.http import ObservedApp
from tests.servers import running_server
from tests.tot.issuing_app import settings_with_clients
from tests.tot.llm_double import ChatRequest, ScriptedLLM
from tree_of_thoughts.app import build_app
from tree_of_thoughts.config import TotSettings

FINISHED = ("succeeded", "failed", "cancelled")
_OPS: dict[type[ast.operator], Callable[[Fraction, Fraction], Fraction]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}


def settings(database_url: str = "", **overrides: Any) -> TotSettings:
    return TotSettings.from_env(
        {}, database_url=database_url, auth_mode="none", metrics_port=0, data_dir=tempfile.mkdtemp(), **overrides
    )


@pytest.fixture(params=["memory", "postgres"])
def tot(request: pytest.FixtureRequest, database_url: str) -> Iterator[httpx.Client]:
    url = database_url if request.param == "postgres" else ""
    with running_server(ObservedApp(build_app(settings(url)))) as base, httpx.Client(base_url=base) as http:
        yield http


@pytest.fixture(scope="module")
def plain() -> Iterator[httpx.Client]:
    """One app without a database or an LLM, shared by the tests that only check answers to bad input."""
    with running_server(ObservedApp(build_app(settings()))) as base, httpx.Client(base_url=base) as http:
        yield http


def thinking_llm() -> Callable[[ChatRequest], str]:
    """A generic-task LLM that never runs out of fresh ideas, so only a budget or a cancel ends the run."""
    ideas = itertools.count()

    def script(request: ChatRequest) -> str:
        if "Judge whether" in request.prompt:
            return "likely"
        return f"consider idea {next(ideas)}"

    return script


def wait_for(
    http: httpx.Client, run_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 15
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run: dict[str, Any] = http.get(f"/api/v1/runs/{run_id}").json()
        if done(run):
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never reached the expected state: {run}")


def evaluate(expression: str) -> tuple[Fraction, list[int]]:
    """Exact value of an arithmetic expression and the numbers it uses."""
    numbers: list[int] = []

    def walk(node: ast.expr) -> Fraction:
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](walk(node.left), walk(node.right))
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            numbers.append(node.value)
            return Fraction(node.value)
        raise AssertionError(f"unexpected syntax in {expression!r}")

    return walk(ast.parse(expression, mode="eval").body), numbers


def test_game24_run_lifecycle(tot: httpx.Client) -> None:
    started = tot.post("/api/v1/runs", json={"task": "game24", "problem": "4 9 10 13", "strategy": "bfs"})
    assert started.status_code == 202
    run_id = started.json()["id"]
    assert started.headers["location"] == f"/api/v1/runs/{run_id}"

    run = wait_for(tot, run_id, lambda r: r["status"] in FINISHED)
    assert (run["status"], run["solved"], run["stop_reason"]) == ("succeeded", True, "solved")
    left, right = run["answer"].split("=")
    value, numbers = evaluate(left)
    assert value == 24 and int(right) == 24 and sorted(numbers) == [4, 9, 10, 13]
    assert run["progress"]["value"] == 1.0 and run["stats"]["nodes_expanded"] > 0
    assert run["params"]["max_depth"] == 5 and run["finished_at"] >= run["created_at"]

    listed = tot.get("/api/v1/runs", params={"status": "succeeded"}).json()
    assert [r["id"] for r in listed["items"]] == [run_id]

    tree = tot.get(f"/api/v1/runs/{run_id}/tree").json()
    best = [n for n in tree["nodes"] if n["on_best_path"]]
    assert [n["depth"] for n in best] == [0, 1, 2, 3] and best[-1]["id"] == tree["best_node_id"]
    assert {"state", "thought", "score", "parent", "depth", "pruned"} <= set(best[-1])

    svg = tot.get(f"/api/v1/runs/{run_id}/tree.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml")
    root = ElementTree.fromstring(svg.text)  # noqa: S314 (our own output)
    best_boxes = [g for g in root.iter("{http://www.w3.org/2000/svg}g") if "best" in (g.get("class") or "")]
    assert len(best_boxes) == 4

    assert tot.post(f"/api/v1/runs/{run_id}/cancel").status_code == 409


def test_unsolvable_puzzle_ends_unsolved_not_failed(tot: httpx.Client) -> None:
    run_id = tot.post("/api/v1/runs", json={"task": "game24", "problem": "1 1 1 1"}).json()["id"]
    run = wait_for(tot, run_id, lambda r: r["status"] in FINISHED)
    assert (run["status"], run["solved"], run["answer"]) == ("succeeded", False, None)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"task": "chess", "problem": "e4"}, 422, "unknown task 'chess'"),
        ({"task": "game24", "problem": "1 2 3"}, 422, "exactly four integers"),
        (
            {"task": "generic", "problem": "Why?"},
            422,
            "task 'generic' needs an LLM: configure an LLM (LLM_BASE_URL, LLM_MODEL)",
        ),
        ({"task": "game24", "problem": "1 2 3 4", "evaluator": "vote"}, 422, "needs an LLM"),
        ({"task": "game24", "problem": "1 2 3 4", "max_depth": 6}, 422, "max_depth 6 is over this server's limit of 5"),
        ({"task": "game24", "problem": "1 2 3 4", "max_nodes": 10**6}, 422, "max_nodes"),
        ({"task": "game24", "problem": "1 2 3 4", "timeout_seconds": 10**5}, 422, "timeout_seconds"),
        ({"task": "game24", "problem": "1 2 3 4", "strategy": "greedy"}, 400, "strategy"),
        ({"task": "game24", "problem": "1 2 3 4", "colour": "red"}, 400, "unknown field"),
        ({"task": "game24", "problem": "x" * 4001}, 400, "problem"),
        ({"task": "game24"}, 400, "problem"),
    ],
)
def test_bad_requests_get_problem_details(plain: httpx.Client, body: dict[str, Any], status: int, needle: str) -> None:
    response = plain.post("/api/v1/runs", json=body)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/problem+json")
    assert needle in response.text


def test_unknown_runs_and_bad_queries(plain: httpx.Client) -> None:
    for path in ("/api/v1/runs/not-a-uuid", "/api/v1/runs/00000000-0000-4000-8000-000000000000/tree.svg"):
        assert plain.get(path).status_code == 404
    assert plain.post("/api/v1/runs/00000000-0000-4000-8000-000000000000/cancel").status_code == 404
    assert plain.get("/api/v1/runs", params={"limit": 0}).status_code == 400
    assert plain.get("/api/v1/runs", params={"status": "lost"}).status_code == 400
    assert plain.get("/api/v1/runs", params={"cursor": "garbage"}).status_code == 400
    tasks = {t["name"]: t for t in plain.get("/api/v1/tasks").json()}
    assert tasks["game24"]["available"] and not tasks["generic"]["available"]
    paths = plain.get("/schema/openapi.json").json()["paths"]
    assert {"/api/v1/runs", "/api/v1/runs/{run_id}/cancel", "/api/v1/runs/{run_id}/tree.svg"} <= set(paths)


@pytest.mark.parametrize("store", ["memory", "postgres"])
def test_cancel_stops_a_long_run_and_keeps_its_partial_tree(store: str, database_url: str) -> None:
    with ScriptedLLM(thinking_llm(), delay=0.3) as llm:
        app = build_app(settings(database_url if store == "postgres" else "", llm_base_url=llm.base_url))
        with running_server(ObservedApp(app)) as base, httpx.Client(base_url=base) as http:
            body = {"task": "generic", "problem": "Plan a trip.", "breadth": 1, "max_depth": 5}
            run_id = http.post("/api/v1/runs", json=body).json()["id"]
            wait_for(http, run_id, lambda r: r["progress"]["message"].startswith("round"))
            asked = time.monotonic()
            assert http.post(f"/api/v1/runs/{run_id}/cancel").status_code == 202
            assert http.post(f"/api/v1/runs/{run_id}/cancel").status_code == 202  # idempotent
            run = wait_for(http, run_id, lambda r: r["status"] in FINISHED)
            assert time.monotonic() - asked < 4
            assert (run["status"], run["stop_reason"], run["cancel_requested"]) == ("cancelled", "cancelled", True)
            nodes = http.get(f"/api/v1/runs/{run_id}/tree").json()["nodes"]
            assert len(nodes) > 1 and max(n["depth"] for n in nodes) < 5
            calls = llm.requests
            time.sleep(0.7)
            assert llm.requests == calls  # nothing keeps calling the LLM
            assert http.post(f"/api/v1/runs/{run_id}/cancel").status_code == 202  # cancelled stays cancellable


def test_a_second_replica_sees_and_cancels_runs_and_finished_runs_survive_restarts(database_url: str) -> None:
    with ScriptedLLM(thinking_llm(), delay=0.3) as llm:
        config = settings(database_url, llm_base_url=llm.base_url)
        with running_server(ObservedApp(build_app(config))) as base_b, httpx.Client(base_url=base_b) as b:
            with running_server(ObservedApp(build_app(config))) as base_a, httpx.Client(base_url=base_a) as a:
                body = {"task": "generic", "problem": "Plan a trip.", "breadth": 1, "max_depth": 5}
                long_id = a.post("/api/v1/runs", json=body).json()["id"]
                quick_id = a.post("/api/v1/runs", json={"task": "game24", "problem": "4 9 10 13"}).json()["id"]
                wait_for(b, long_id, lambda r: r["status"] == "running")
                assert b.post(f"/api/v1/runs/{long_id}/cancel").status_code == 202
                # A's worker polls the flag about once a second, then stops after the current round.
                run = wait_for(a, long_id, lambda r: r["status"] in FINISHED, timeout=8)
                assert run["status"] == "cancelled"
                assert wait_for(b, quick_id, lambda r: r["status"] in FINISHED)["status"] == "succeeded"
            # Replica A is gone; its finished runs are not.
            assert {r["id"] for r in b.get("/api/v1/runs").json()["items"]} == {long_id, quick_id}
            assert b.get(f"/api/v1/runs/{quick_id}/tree").json()["nodes"][0]["state"] == "4 9 10 13"


async def test_a_run_left_running_by_a_dead_replica_reads_as_failed(database_url: str) -> None:
    with running_server(ObservedApp(build_app(settings(database_url)))) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            run_id = (await http.post("/api/v1/runs", json={"task": "game24", "problem": "4 9 10 13"})).json()["id"]
            while (await http.get(f"/api/v1/runs/{run_id}")).json()["status"] != "succeeded":
                await asyncio.sleep(0.02)
            conn = await asyncpg.connect(database_url)
            try:
                # What a replica that died mid-run leaves behind.
                await conn.execute(
                    "UPDATE tot_runs SET status = 'running', finished_at = NULL, "
                    "heartbeat_at = now() - interval '5 minutes' WHERE id = $1",
                    run_id,
                )
            finally:
                await conn.close()
            run = (await http.get(f"/api/v1/runs/{run_id}")).json()
    assert (run["status"], run["stop_reason"]) == ("failed", "worker_lost")
    assert "Traceback" not in run["error"]


def test_callers_see_only_their_own_runs_and_need_the_right_scopes() -> None:
    """With real tokens from the built-in issuer: others' runs are 404 (not 403), scopes are enforced."""
    config = settings_with_clients(
        {"alice": ["tot:run", "tot:read"], "bob": ["tot:run", "tot:read"], "reader": ["tot:read"]}
    )
    with running_server(ObservedApp(build_app(config)), port=config.port) as base, httpx.Client(base_url=base) as http:

        def as_(name: str) -> dict[str, str]:
            issued = http.post("/oauth/token", data={"grant_type": "client_credentials"}, auth=(name, f"{name}-secret"))
            return {"Authorization": f"Bearer {issued.json()['access_token']}"}

        alice, bob, reader = as_("alice"), as_("bob"), as_("reader")
        run_id = http.post("/api/v1/runs", json={"task": "game24", "problem": "4 9 10 13"}, headers=alice).json()["id"]
        assert http.get(f"/api/v1/runs/{run_id}", headers=alice).status_code == 200
        for path in (f"/api/v1/runs/{run_id}", f"/api/v1/runs/{run_id}/tree", f"/api/v1/runs/{run_id}/tree.svg"):
            assert http.get(path, headers=bob).status_code == 404
        assert http.post(f"/api/v1/runs/{run_id}/cancel", headers=bob).status_code == 404
        assert http.get("/api/v1/runs", headers=bob).json()["items"] == []
        refused = http.post("/api/v1/runs", json={"task": "game24", "problem": "4 9 10 13"}, headers=reader)
        assert refused.status_code == 403 and "tot:run" in refused.text
        assert http.get("/api/v1/runs", headers=reader).status_code == 200
        assert http.get("/api/v1/runs").status_code == 401
