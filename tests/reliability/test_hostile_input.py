"""Hostile input against both apps as processes: schemathesis over every operation, malformed
JSON-RPC on /mcp, bodies and headers too large. Auth is off (AUTH_MODE=none): this is about input.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.reliability.harness import (
    BIN,
    LOG_DIR,
    MCP_HEADERS,
    AppProcess,
    dedicated_postgres,
    registry_process,
    tot_process,
)
from tests.tot.llm_double import ScriptedLLM

MAX_EXAMPLES = 25  # per operation and phase; a few hundred to a few thousand cases per app
MAX_SECONDS = 45
CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"


@pytest.fixture(scope="module")
def apps() -> Iterator[dict[str, AppProcess]]:
    with dedicated_postgres() as pg, ScriptedLLM(lambda _: "likely") as llm:
        registry = registry_process(pg.url).start()
        tot = tot_process(pg.url, LLM_BASE_URL=llm.base_url, MAX_ACTIVE_RUNS_PER_OWNER="1000").start()
        try:
            yield {"registry": registry, "tot": tot}
        finally:
            registry.stop()
            tot.stop()


def _schemathesis(app: AppProcess) -> tuple[int, str, float]:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    report = LOG_DIR / f"schemathesis-{app.name}.ndjson"
    started = time.monotonic()
    result = subprocess.run(
        [
            str(BIN / "schemathesis"),
            "run",
            f"{app.url}/schema/openapi.json",
            "--checks",
            CHECKS,
            "--max-examples",
            str(MAX_EXAMPLES),
            "--max-time",
            str(MAX_SECONDS),
            "--request-timeout",
            "10",
            "--seed",
            "24",
            "--generation-database",
            "none",
            "--continue-on-failure",
            "--no-color",
            "--report",
            "ndjson",
            "--report-ndjson-path",
            str(report),
        ],
        capture_output=True,
        text=True,
        timeout=MAX_SECONDS * 3,
        check=False,
    )
    return result.returncode, result.stdout + result.stderr, time.monotonic() - started


@pytest.mark.slow
def test_schemathesis_finds_no_server_errors_or_schema_violations(apps: dict[str, AppProcess]) -> None:
    with ThreadPoolExecutor(2) as pool:
        results = dict(zip(apps, pool.map(_schemathesis, apps.values()), strict=True))
    for name, (code, output, seconds) in results.items():
        summary = [line for line in output.splitlines() if "generated" in line or "Selected:" in line]
        print(f"\n{name}: {seconds:.0f} s, {' '.join(s.strip() for s in summary)}")
        assert code == 0, f"{name}:\n{output[-6000:]}"


# --- /mcp: malformed JSON-RPC ------------------------------------------------------------------

CASES = [
    ("parse error", b'{"jsonrpc": "2.0", "id": 1, "method": ', 400, -32700),
    ("not an object", b'"tools/list"', 400, -32600),
    ("wrong jsonrpc version", b'{"jsonrpc": "1.0", "id": 1, "method": "tools/list"}', 400, -32600),
    ("missing jsonrpc", b'{"id": 1, "method": "tools/list"}', 400, -32600),
    ("method not a string", b'{"jsonrpc": "2.0", "id": 1, "method": 7}', 400, -32600),
    ("batch", b'[{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}]', 400, -32600),
    ("empty batch", b"[]", 400, -32600),
    ("nested too deeply", b"[" * 100_000 + b"]" * 100_000, 400, -32700),
    ("unknown method", b'{"jsonrpc": "2.0", "id": 1, "method": "tools/explode"}', 200, -32601),
    ("params of the wrong shape", b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": [1]}', 400, -32602),
    ("tool call without a name", b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {}}', 200, -32602),
    (
        "unknown tool",
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "rm_rf", "arguments": {}}}',
        200,
        -32602,
    ),
]


@pytest.mark.parametrize("app_name", ["registry", "tot"])
@pytest.mark.parametrize(("case", "body", "http_status", "code"), CASES, ids=[c[0] for c in CASES])
def test_malformed_json_rpc_gets_the_code_the_spec_names(
    apps: dict[str, AppProcess], app_name: str, case: str, body: bytes, http_status: int, code: int
) -> None:
    response = httpx.post(f"{apps[app_name].url}/mcp", content=body, headers=MCP_HEADERS, timeout=10)
    assert (response.status_code, response.headers["content-type"]) == (http_status, "application/json"), case
    answer = response.json()
    assert answer["jsonrpc"] == "2.0" and answer["error"]["code"] == code, answer


@pytest.mark.parametrize("app_name", ["registry", "tot"])
def test_tool_arguments_of_the_wrong_type_are_a_tool_error(apps: dict[str, AppProcess], app_name: str) -> None:
    """Argument validation failures are tool execution errors (isError), so a model can correct itself."""
    name = "get_tool" if app_name == "registry" else "get_run"
    arguments = {"name": 5} if app_name == "registry" else {"run_id": 5}
    body = {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    response = httpx.post(f"{apps[app_name].url}/mcp", json=body, headers=MCP_HEADERS, timeout=10)
    assert response.status_code == 200
    assert response.json()["result"]["isError"] is True


# --- sizes -----------------------------------------------------------------------------------


def _send_oversized_body(port: int, path: str, declared: int, content_type: str) -> tuple[bytes, int]:
    """Declare ``declared`` bytes, then stream until the server answers; returns (answer, bytes sent)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-06-18\r\n"
        f"Content-Length: {declared}\r\n\r\n"
    )
    sock.sendall(head.encode())
    sock.settimeout(0.005)
    chunk = b"[" * 65536
    sent = 0
    answer = b""
    try:
        while sent < declared:
            try:
                answer = sock.recv(4096)
                if answer:
                    break
            except TimeoutError:
                pass
            try:
                sock.settimeout(2)
                sent += sock.send(chunk[: declared - sent])
                sock.settimeout(0.005)
            except OSError:
                break
        sock.settimeout(10)
        if not answer:
            answer = sock.recv(4096)
    except OSError:
        pass
    finally:
        sock.close()
    return answer, sent


@pytest.mark.parametrize("app_name", ["registry", "tot"])
@pytest.mark.parametrize("path", ["/mcp", "/api/v1/search"])
def test_huge_bodies_are_refused_with_413_before_being_read_whole(
    apps: dict[str, AppProcess], app_name: str, path: str
) -> None:
    if app_name == "tot" and path == "/api/v1/search":
        path = "/api/v1/runs"
    declared = 256 * 1024 * 1024  # far over MAX_REQUEST_BYTES (16 MiB registry, 1 MiB ToT)
    answer, sent = _send_oversized_body(apps[app_name].port, path, declared, "application/json")
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert sent < 32 * 1024 * 1024, f"{sent} bytes were read before the 413"


@pytest.mark.parametrize("app_name", ["registry", "tot"])
def test_oversized_headers_are_refused(apps: dict[str, AppProcess], app_name: str) -> None:
    """The runner's httptools protocol refuses request heads over 32 KiB (platform_common/protocol.py)."""
    for size in (1024 * 1024, 8 * 1024 * 1024):
        with socket.create_connection(("127.0.0.1", apps[app_name].port), timeout=10) as sock:
            try:
                sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n")
                answer = sock.recv(200)
            except ConnectionResetError:
                answer = b"reset"
        assert answer.startswith((b"HTTP/1.1 400", b"HTTP/1.1 431")) or answer in (b"", b"reset"), answer
        with socket.create_connection(("127.0.0.1", apps[app_name].port), timeout=10) as sock:
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nX-Small: " + b"a" * 4096 + b"\r\n\r\n")
            assert sock.recv(200).startswith(b"HTTP/1.1 200")


def test_nul_characters_are_a_400_not_a_500(apps: dict[str, AppProcess]) -> None:
    """Regression: PostgreSQL cannot store U+0000 in text or jsonb; that surfaced as a 500."""
    registry, tot = apps["registry"].url, apps["tot"].url
    response = httpx.get(f"{registry}/api/v1/tools", params={"tag": "a\x00b"}, timeout=10)
    assert response.status_code == 400, response.text
    body = {"task": "generic", "problem": "Plan a trip\x00.", "breadth": 1, "max_depth": 1}
    response = httpx.post(f"{tot}/api/v1/runs", json=body, timeout=10)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"] == "application/problem+json"


def test_registry_rejects_an_unparseable_upstream_url(apps: dict[str, AppProcess]) -> None:
    """Regression (found by schemathesis, fixed in the registry): urlsplit's ValueError was a 500."""
    response = httpx.post(
        f"{apps['registry'].url}/api/v1/servers", json={"name": "broken", "url": "http://a]"}, timeout=10
    )
    assert 400 <= response.status_code < 500, response.text


def test_registry_documents_the_422_of_register_server(apps: dict[str, AppProcess]) -> None:
    schema = httpx.get(f"{apps['registry'].url}/schema/openapi.json", timeout=10).json()
    assert "422" in schema["paths"]["/api/v1/servers"]["post"]["responses"]
