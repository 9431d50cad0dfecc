"""The run tools and the tree resource through the official MCP client, in both protocol eras."""

from __future__ import annotations

import asyncio
import itertools
import json
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from platform_common.http import ObservedApp
from tests.servers import running_server
from tests.tot.issuing_app import settings_with_clients
from tests.tot.llm_double import ChatRequest, ScriptedLLM
from tree_of_thoughts.app import build_app
from tree_of_thoughts.config import TotSettings

MODES = ["legacy", "2026-07-28"]


def _settings(**overrides: Any) -> TotSettings:
    return TotSettings.from_env({}, auth_mode="none", metrics_port=0, data_dir=tempfile.mkdtemp(), **overrides)


@pytest.fixture(scope="module")
def tot_url() -> Iterator[str]:
    with running_server(ObservedApp(build_app(_settings()))) as url:
        yield url


@pytest.fixture(scope="module")
def slow_tot_url() -> Iterator[str]:
    """A server whose LLM answers slowly and never runs out of ideas: its generic runs last until cancelled."""
    ideas = itertools.count()

    def script(request: ChatRequest) -> str:
        return "likely" if "Judge whether" in request.prompt else f"consider idea {next(ideas)}"

    with (
        ScriptedLLM(script, delay=0.3) as llm,
        running_server(ObservedApp(build_app(_settings(llm_base_url=llm.base_url)))) as url,
    ):
        yield url


async def _until_finished(client: Client, run_id: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await client.call_tool("get_run", {"run_id": run_id})
        run: dict[str, Any] | None = result.structured_content
        assert run is not None
        if run["status"] in ("succeeded", "failed", "cancelled"):
            return run
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run_id} did not finish")


@pytest.mark.parametrize("mode", MODES)
async def test_solve_returns_the_answer_and_the_tree_resource_holds_the_tree(tot_url: str, mode: str) -> None:
    async with Client(f"{tot_url}/mcp", mode=mode) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert {"solve", "start_run", "get_run", "cancel_run", "list_runs"} <= set(tools)
        solve, cancel = tools["solve"].annotations, tools["cancel_run"].annotations
        assert solve is not None and not solve.read_only_hint and not solve.idempotent_hint
        assert cancel is not None and cancel.idempotent_hint and not cancel.destructive_hint
        assert tools["get_run"].output_schema is not None

        progress: list[float] = []

        async def on_progress(value: float, total: float | None, message: str | None) -> None:
            progress.append(value)

        result = await client.call_tool(
            "solve", {"task": "game24", "problem": "4 9 10 13"}, progress_callback=on_progress
        )
        run = result.structured_content
        assert not result.is_error and run is not None
        assert run["solved"] and run["answer"].endswith("= 24")
        # notifications/progress arrive while the search runs, ending at 1.0.
        assert progress and progress[-1] == 1.0 and progress == sorted(progress)

        templates = (await client.list_resource_templates()).resource_templates
        assert [t.uri_template for t in templates] == ["tot://runs/{id}/tree"]
        contents = (await client.read_resource(f"tot://runs/{run['id']}/tree")).contents
        tree = json.loads(contents[0].text)  # type: ignore[union-attr]
        assert tree["best_node_id"] == _best_path_end(tree) and len(tree["nodes"]) > 1


def _best_path_end(tree: dict[str, Any]) -> int:
    return max(int(n["id"]) for n in tree["nodes"] if n["on_best_path"])


@pytest.mark.parametrize("mode", MODES)
async def test_start_get_list_and_refusals(tot_url: str, mode: str) -> None:
    async with Client(f"{tot_url}/mcp", mode=mode) as client:
        started = await client.call_tool("start_run", {"task": "game24", "problem": "3 3 8 8", "strategy": "dfs"})
        assert started.structured_content is not None
        run_id = started.structured_content["id"]
        run = await _until_finished(client, run_id)
        assert run["solved"] and run["params"]["strategy"] == "dfs"

        listed = (await client.call_tool("list_runs", {"status": "succeeded", "limit": 100})).structured_content
        assert listed is not None and run_id in {r["id"] for r in listed["items"]}

        refused = await client.call_tool("cancel_run", {"run_id": run_id})
        assert refused.is_error and "already ended" in refused.content[0].text  # type: ignore[union-attr]
        bad = await client.call_tool("start_run", {"task": "generic", "problem": "Why?"})
        assert bad.is_error and "needs an LLM" in bad.content[0].text  # type: ignore[union-attr]
        missing = await client.call_tool("get_run", {"run_id": "00000000-0000-4000-8000-000000000000"})
        assert missing.is_error and "No run" in missing.content[0].text  # type: ignore[union-attr]


@pytest.mark.parametrize("mode", MODES)
async def test_cancel_run_stops_a_long_run(slow_tot_url: str, mode: str) -> None:
    async with Client(f"{slow_tot_url}/mcp", mode=mode) as client:
        body = {"task": "generic", "problem": "Plan a trip.", "breadth": 1, "max_depth": 5}
        started = (await client.call_tool("start_run", body)).structured_content
        assert started is not None
        await asyncio.sleep(0.5)
        first = await client.call_tool("cancel_run", {"run_id": started["id"]})
        again = await client.call_tool("cancel_run", {"run_id": started["id"]})
        assert not first.is_error and not again.is_error
        run = await _until_finished(client, started["id"], timeout=6)
        assert (run["status"], run["stop_reason"]) == ("cancelled", "cancelled")


@pytest.mark.parametrize("mode", MODES)
async def test_tools_act_for_the_token_subject_and_check_scopes(mode: str) -> None:
    config = settings_with_clients({"alice": ["tot:run", "tot:read"], "reader": ["tot:read"]})
    with running_server(ObservedApp(build_app(config)), port=config.port) as base:
        tokens = {}
        async with httpx.AsyncClient(base_url=base) as http:
            for name in ("alice", "reader"):
                issued = await http.post(
                    "/oauth/token", data={"grant_type": "client_credentials"}, auth=(name, f"{name}-secret")
                )
                tokens[name] = issued.json()["access_token"]

        def connect(name: str) -> tuple[httpx2.AsyncClient, Client]:
            http_client = httpx2.AsyncClient(headers={"Authorization": f"Bearer {tokens[name]}"})
            return http_client, Client(streamable_http_client(f"{base}/mcp", http_client=http_client), mode=mode)

        alice_http, alice = connect("alice")
        async with alice_http, alice:
            run = (await alice.call_tool("solve", {"task": "game24", "problem": "4 9 10 13"})).structured_content
            assert run is not None and run["solved"]
        reader_http, reader = connect("reader")
        async with reader_http, reader:
            refused = await reader.call_tool("start_run", {"task": "game24", "problem": "4 9 10 13"})
            assert refused.is_error and "'tot:run' scope" in refused.content[0].text  # type: ignore[union-attr]
            hidden = await reader.call_tool("get_run", {"run_id": run["id"]})
            assert hidden.is_error and "No run" in hidden.content[0].text  # type: ignore[union-attr]
            assert (await reader.call_tool("list_runs", {})).structured_content == {"items": [], "next_cursor": None}
