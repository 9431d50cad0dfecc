"""The ToT server as a running service: health, readiness with and without a database, MCP in both eras."""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from litestar.testing import AsyncTestClient
from mcp import Client

from platform_common.http import ObservedApp
from platform_common.settings import SettingsError
from tests.servers import running_server
from tree_of_thoughts.app import build_app
from tree_of_thoughts.config import TotSettings


@pytest.fixture
def tot_url(database_url: str, tmp_path: object) -> Iterator[str]:
    settings = TotSettings.from_env(
        {}, database_url=database_url, auth_mode="none", metrics_port=0, data_dir=str(tmp_path)
    )
    with running_server(ObservedApp(build_app(settings))) as url:
        yield url


async def test_health_ready_and_openapi(tot_url: str) -> None:
    async with httpx.AsyncClient(base_url=tot_url) as http:
        assert (await http.get("/health")).status_code == 200
        assert (await http.get("/ready")).json()["checks"] == {"database": "ok", "signing_keys": "ok"}
        assert (await http.get("/schema/openapi.json")).json()["info"]["title"] == "Tree-of-Thoughts server"


async def test_without_a_database_readiness_has_nothing_to_wait_for() -> None:
    app = build_app(TotSettings.from_env({}, auth_mode="none", data_dir=tempfile.mkdtemp()))
    async with AsyncTestClient(app) as http:  # runs the lifespan: the signing keys are loaded
        response = await http.get("/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"signing_keys": "ok"}}


@pytest.mark.parametrize("mode", ["legacy", "2026-07-28"])
async def test_mcp_lists_and_calls_tools_in_both_protocol_eras(tot_url: str, mode: str) -> None:
    async with Client(f"{tot_url}/mcp", mode=mode) as client:  # type: ignore[arg-type]
        names = {tool.name for tool in (await client.list_tools()).tools}
        assert "list_strategies" in names
        result = await client.call_tool("list_strategies", {})
        assert result.structured_content is not None
        assert set(result.structured_content["strategies"]) == {"bfs", "dfs", "best_first"}


def test_several_workers_without_a_database_are_refused() -> None:
    with pytest.raises(SettingsError, match="WORKERS > 1 needs DATABASE_URL"):
        build_app(TotSettings.from_env({}, auth_mode="none", workers=2))


def test_serve_refuses_a_bad_configuration_with_one_clear_line(tmp_path: Path) -> None:
    env = {**os.environ, "AUTH_MODE": "none", "KEY_OVERLAP_HOURS": "1", "DATA_DIR": str(tmp_path)}
    done = subprocess.run(
        ["tot", "serve", "--port", "65500", "--metrics-port", "0"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert "configuration error: KEY_OVERLAP_HOURS=1 is too short" in done.stderr
    assert "Traceback" not in done.stderr
