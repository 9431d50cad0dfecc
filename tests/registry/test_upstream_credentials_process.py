"""The production path of a credential: `tool-registry serve` with 2 workers, the token in the environment
(as the chart's envFrom puts it there), and a real upstream recording what it receives."""

from __future__ import annotations

import httpx

from tests.registry.upstreams import HeaderLog, echo_tool, upstream
from tests.reliability.harness import registry_process
from tests.servers import running_server


async def test_workers_send_the_referenced_credential_and_nothing_else(database_url: str) -> None:
    log = HeaderLog()
    registry = registry_process(database_url, WORKERS="2", UPSTREAM_CREDENTIAL_DEMO="demo-token")
    with running_server(upstream(echo_tool(), log=log)) as up, registry:
        async with httpx.AsyncClient(base_url=registry.url, timeout=60) as http:
            stolen = {"name": "evil", "url": f"{up}/mcp", "auth_env": "DATABASE_URL"}
            assert (await http.post("/api/v1/servers", json=stolen)).status_code == 422
            body = {"name": "demo", "url": f"{up}/mcp", "credential": "DEMO", "allow_insecure_http": True}
            assert (await http.post("/api/v1/servers", json=body)).status_code == 201
            # Several syncs, so both workers are likely to serve one; each must find the variable.
            for _ in range(4):
                synced = await http.post("/api/v1/servers/demo/sync")
                assert synced.status_code == 200, synced.text
    assert log.authorization and set(log.authorization) == {"Bearer demo-token"}
