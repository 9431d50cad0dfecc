"""The gateway against a hostile upstream and a hostile admin: credentials, SSRF, caps, ReDoS.

Every upstream is a real MCP server on 127.0.0.1; the registry runs with uvicorn in a thread.
Names that must resolve to chosen addresses use the registry's injectable resolver (the code path
that follows resolution is the production one).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from mcp import Client

from platform_common.http import ObservedApp
from tests.registry.conftest import settings_for
from tests.registry.upstreams import (
    HeaderLog,
    counting_relay,
    echo_tool,
    huge_tool,
    pattern_tool,
    upstream,
)
from tests.servers import free_port, running_server
from tool_registry.app import build_app
from tool_registry.config import RegistrySettings
from tool_registry.egress import Resolver, system_resolver
from tool_registry.federation import GENERIC_FAILURE, MAX_RESPONSE_BYTES


@contextlib.contextmanager
def serve_registry(database_url: str, resolver: Resolver | None = None, **overrides: Any) -> Iterator[str]:
    """The registry with ``overrides`` of the test settings and, optionally, its own DNS."""
    with running_server(ObservedApp(build_app(settings_for(database_url, **overrides), resolver=resolver))) as url:
        yield url


@pytest.fixture
def registry_url(database_url: str) -> Iterator[str]:
    with serve_registry(database_url) as url:
        yield url


async def test_settings_cannot_be_sent_as_credentials(registry_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The review's attack: auth_env naming the registry's own secrets. Nothing reaches the upstream."""
    monkeypatch.setenv("DATABASE_URL", "postgresql://mcp:secret@db/mcp")
    monkeypatch.setenv("UPSTREAM_CREDENTIAL_DEMO", "demo-token")
    log = HeaderLog()
    async with httpx.AsyncClient(base_url=registry_url, timeout=60) as http:
        with running_server(upstream(echo_tool(), log=log)) as up:
            url = f"{up}/mcp"
            for name in ("DATABASE_URL", "EMBEDDING_API_KEY", "API_KEYS"):
                refused = await http.post("/api/v1/servers", json={"name": "evil", "url": url, "auth_env": name})
                assert refused.status_code == 422, refused.text
                assert "UPSTREAM_CREDENTIAL_<NAME>" in refused.json()["detail"]
            # credential names <NAME> under the prefix only: DATABASE_URL means UPSTREAM_CREDENTIAL_DATABASE_URL.
            unknown = await http.post(
                "/api/v1/servers", json={"name": "evil", "url": url, "credential": "DATABASE_URL"}
            )
            assert unknown.status_code == 422 and "UPSTREAM_CREDENTIAL_DATABASE_URL" in unknown.json()["detail"]
            # A real credential over plain http: refused unless allowed, and then only because the host is loopback.
            clear = await http.post("/api/v1/servers", json={"name": "evil", "url": url, "credential": "DEMO"})
            assert clear.status_code == 422 and "http://" in clear.json()["detail"]
            assert (await http.get("/api/v1/servers")).json() == []
            assert log.authorization == []  # nothing was sent anywhere

            plain = {"name": "plain", "url": url, "auto_approve": True}
            assert (await http.post("/api/v1/servers", json=plain)).status_code == 201
            assert (await http.post("/api/v1/servers/plain/sync")).status_code == 200
            assert log.authorization and set(log.authorization) == {None}

            # The positive control: the recorder does see a credential when one is meant to be sent.
            log.authorization.clear()
            demo = {"name": "demo", "url": url, "credential": "DEMO", "allow_insecure_http": True}
            created = await http.post("/api/v1/servers", json=demo)
            assert created.status_code == 201, created.text
            assert created.json()["credential"] == "DEMO" and "auth_env" not in created.json()
            assert (await http.post("/api/v1/servers/demo/sync")).status_code == 200
            assert set(log.authorization) == {"Bearer demo-token"}


async def test_allow_insecure_http_is_for_loopback_only(database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UPSTREAM_CREDENTIAL_DEMO", "demo-token")

    async def resolver(host: str, port: int) -> list[str]:
        return {"mcp.example.com": ["93.184.216.34"]}[host]

    with serve_registry(
        database_url, resolver, upstream_allowed_hosts=["mcp.example.com"], upstream_allowed_ports=["80", "443"]
    ) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            body = {"name": "far", "url": "http://mcp.example.com/mcp", "credential": "DEMO"}
            refused = await http.post("/api/v1/servers", json={**body, "allow_insecure_http": True})
            assert refused.status_code == 422 and "loopback" in refused.json()["detail"]
            https = await http.post("/api/v1/servers", json={**body, "url": "https://mcp.example.com/mcp"})
            assert https.status_code == 201, https.text


async def test_names_must_resolve_to_public_addresses(database_url: str) -> None:
    """An allowlisted name (or wildcard) pointing at loopback, metadata or private space is refused."""
    answers = {
        "evil.tools.example": ["127.0.0.1"],
        "meta.tools.example": ["169.254.169.254"],
        "mapped.tools.example": ["::ffff:10.0.0.7"],
        "nat64.tools.example": ["64:ff9b::a9fe:a9fe"],
        "cgnat.tools.example": ["100.64.0.9"],
        "mixed.tools.example": ["93.184.216.34", "192.168.1.1"],
        "good.tools.example": ["93.184.216.34"],
        "inside.tools.example": ["10.20.0.5"],
    }
    seen: list[str] = []

    async def resolver(host: str, port: int) -> list[str]:
        seen.append(host)
        return answers[host] if host in answers else await system_resolver(host, port)

    hosts = ["*.tools.example", "localhost", "10.20.0.0/16"]
    with serve_registry(database_url, resolver, upstream_allowed_hosts=hosts, upstream_allowed_ports=["443"]) as url:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:

            async def register(name: str, target: str) -> httpx.Response:
                return await http.post("/api/v1/servers", json={"name": name, "url": target})

            for host in ("evil", "meta", "mapped", "nat64", "cgnat", "mixed"):
                refused = await register(host, f"https://{host}.tools.example/mcp")
                assert refused.status_code == 403, (host, refused.text)
                assert "non-public address" in refused.json()["detail"]
                assert answers[f"{host}.tools.example"][-1] not in refused.json()["detail"]
            assert (await register("good", "https://good.tools.example/mcp")).status_code == 201
            # Listed explicitly as a CIDR: an internal upstream is allowed.
            assert (await register("inside", "https://inside.tools.example/mcp")).status_code == 201
            # The metadata address itself, and the real resolver's localhost (127.0.0.1), are not listed.
            assert (await register("imds", "https://169.254.169.254/latest")).status_code == 403
            assert (await register("local", "https://localhost/mcp")).status_code == 403
            port = await register("port", "https://good.tools.example:8443/mcp")
            assert port.status_code == 403 and "UPSTREAM_ALLOWED_PORTS" in port.json()["detail"]
            # A name off the list is never resolved (no DNS oracle through registration).
            assert (await register("other", "https://other.example/mcp")).status_code == 403
            assert "other.example" not in seen


async def test_connection_goes_to_the_checked_address_with_the_name(database_url: str) -> None:
    """The name resolves once; the request goes to that address, and the upstream sees the name as Host."""
    answers = {"upstream.test": ["127.0.0.1"]}

    async def resolver(host: str, port: int) -> list[str]:
        return answers[host]

    log = HeaderLog()
    hosts = ["upstream.test", "127.0.0.1"]
    with running_server(upstream(echo_tool(), log=log)) as up:
        port = int(up.rsplit(":", 1)[1])
        with serve_registry(database_url, resolver, upstream_allowed_hosts=hosts) as url:
            async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                body = {"name": "named", "url": f"http://upstream.test:{port}/mcp", "auto_approve": True}
                assert (await http.post("/api/v1/servers", json=body)).status_code == 201
                synced = await http.post("/api/v1/servers/named/sync")
                assert synced.status_code == 200 and synced.json()["created"] == 1, synced.text
                assert set(log.host) == {f"upstream.test:{port}"}
                # DNS now points the name elsewhere (not listed): the next connection is refused.
                answers["upstream.test"] = ["10.1.2.3"]
                failed = await http.post("/api/v1/servers/named/sync")
                assert failed.status_code == 502 and "non-public address" in failed.json()["detail"]


async def test_sync_errors_do_not_reveal_port_states(registry_url: str) -> None:
    """A closed port and an open non-MCP port leave the same message for read-only callers."""
    async with httpx.AsyncClient(base_url=registry_url, timeout=60) as http:
        closed = {"name": "closed", "url": f"http://127.0.0.1:{free_port()}/mcp"}
        not_mcp = {"name": "web", "url": f"{registry_url}/health"}
        for body in (closed, not_mcp):
            assert (await http.post("/api/v1/servers", json=body)).status_code == 201
            sync = await http.post(f"/api/v1/servers/{body['name']}/sync")
            assert sync.status_code == 502
        errors = {s["name"]: s["last_sync_error"] for s in (await http.get("/api/v1/servers")).json()}
        assert errors == {"closed": GENERIC_FAILURE, "web": GENERIC_FAILURE}


async def test_a_sync_over_the_tool_cap_applies_nothing(database_url: str) -> None:
    three = upstream(echo_tool("one"), echo_tool("two"), echo_tool("three"))
    with running_server(three) as up, serve_registry(database_url, upstream_max_tools=2) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            body = {"name": "many", "url": f"{up}/mcp", "auto_approve": True}
            assert (await http.post("/api/v1/servers", json=body)).status_code == 201
            sync = await http.post("/api/v1/servers/many/sync")
            assert sync.status_code == 502 and "more than 2 tools" in sync.json()["detail"]
            assert (await http.get("/api/v1/tools", params={"source": "many"})).json()["tools"] == []
            server = (await http.get("/api/v1/servers/many")).json()
            assert "UPSTREAM_MAX_TOOLS" in server["last_sync_error"] and server["tool_count"] == 0


async def test_a_huge_upstream_result_is_cut_off_while_streaming(registry_url: str) -> None:
    """64 MiB from the upstream: the registry stops reading past its cap instead of buffering it all."""
    sent_mib = 64
    async with httpx.AsyncClient(base_url=registry_url, timeout=60) as http:
        with running_server(upstream(huge_tool())) as up:
            up_port = int(up.rsplit(":", 1)[1])
            with counting_relay(up_port) as (relay_port, counter):
                body = {"name": "big", "url": f"http://127.0.0.1:{relay_port}/mcp", "auto_approve": True}
                assert (await http.post("/api/v1/servers", json=body)).status_code == 201
                assert (await http.post("/api/v1/servers/big/sync")).status_code == 200
                counter.to_client = 0
                async with Client(f"{registry_url}/mcp", mode="legacy") as client:
                    started = time.perf_counter()
                    result = await client.call_tool(
                        "call_tool", {"name": "big.huge", "arguments": {"mebibytes": sent_mib}}
                    )
                    elapsed = time.perf_counter() - started
                await asyncio.sleep(0.5)  # let the relay notice the closed connection
    assert result.is_error, result.content
    text = result.content[0].text  # type: ignore[union-attr]
    assert "ResponseTooLarge" in text or "passed" in text, text
    read = counter.to_client
    print(f"\nupstream sent a {sent_mib} MiB result; the relay passed {read / 1_048_576:.1f} MiB; {elapsed:.2f} s")
    assert read < 4 * MAX_RESPONSE_BYTES < sent_mib * 1_048_576


@contextlib.contextmanager
def health_probe(url: str) -> Iterator[list[float]]:
    """GET ``url`` every 5 ms from a thread of its own (its own client and loop); yields the latencies."""
    latencies: list[float] = []
    stop = threading.Event()

    def probe() -> None:
        with httpx.Client(timeout=10) as http:
            while not stop.is_set():
                started = time.perf_counter()
                assert http.get(url).status_code == 200
                latencies.append(time.perf_counter() - started)
                stop.wait(0.005)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    try:
        yield latencies
    finally:
        stop.set()
        thread.join(10)


async def test_a_backtracking_pattern_cannot_stall_the_registry(registry_url: str) -> None:
    """The review's ReDoS: ^(a+)+$ with a long non-matching argument. Fast refusal, /health unaffected."""
    async with httpx.AsyncClient(base_url=registry_url, timeout=60) as http:
        with running_server(upstream(pattern_tool())) as up:
            body = {"name": "re", "url": f"{up}/mcp", "auto_approve": True}
            assert (await http.post("/api/v1/servers", json=body)).status_code == 201
            assert (await http.post("/api/v1/servers/re/sync")).status_code == 200
            async with Client(f"{registry_url}/mcp", mode="legacy") as client:
                ok = await client.call_tool("call_tool", {"name": "re.shout", "arguments": {"word": "aaa"}})
                assert not ok.is_error, ok.content
                with health_probe(f"{registry_url}/health") as health:
                    calls: list[float] = []
                    # Rounds until the probe has seen at least half a second of them (each round is fast).
                    began = time.perf_counter()
                    while not calls or time.perf_counter() - began < 0.5:
                        for length in (26, 30, 40, 1000, 100_000):
                            started = time.perf_counter()
                            evil = {"name": "re.shout", "arguments": {"word": "a" * length + "!"}}
                            result = await client.call_tool("call_tool", evil)
                            calls.append(time.perf_counter() - started)
                            assert result.is_error and "does not match" in result.content[0].text  # type: ignore[union-attr]
    print(
        f"\nReDoS calls (26..100k chars + '!'): max {max(calls) * 1000:.1f} ms; /health during them: "
        f"{len(health)} probes, median {statistics.median(health) * 1000:.1f} ms, max {max(health) * 1000:.1f} ms"
    )
    # Generous bounds (the numbers above are measured): a backtracking engine takes minutes on the 40-character
    # argument and stalls /health as long, so a loaded CI runner cannot blur the difference.
    assert max(calls) < 1.0
    assert len(health) >= 3 and max(health) < 0.5


async def test_schemas_the_linear_engine_cannot_run_are_refused(registry_url: str) -> None:
    async with httpx.AsyncClient(base_url=registry_url, timeout=30) as http:
        body = {
            "name": "lookahead",
            "description": "Uses a look-ahead.",
            "input_schema": {"type": "object", "properties": {"p": {"type": "string", "pattern": "^(?=a)a+$"}}},
        }
        refused = await http.post("/api/v1/tools", json=body)
        assert refused.status_code == 422 and "argument checks" in refused.json()["detail"]


def test_no_setting_is_named_like_a_credential() -> None:
    """The runner copies every setting into the environment; none may land in the credential namespace."""
    assert not [f for f in RegistrySettings.__struct_fields__ if f.upper().startswith("UPSTREAM_CREDENTIAL")]
