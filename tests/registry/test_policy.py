"""Per-tool authorization and the audit log, end to end.

A real JWKS server signs for three principals (an admin, alice in the ``developers`` group, bob by
subject), two real upstream MCP servers provide tools (one destructive), the registry runs with
AUTH_MODE=jwt and a policy file laid out like a ConfigMap volume (``..data`` symlink swapped on
update), and callers use REST and the official MCP SDK client.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import httpx2
import msgspec
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from litestar import Litestar, get
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from prometheus_client import REGISTRY

from platform_common.auth import Principal, principal_from_claims
from platform_common.db import Database
from platform_common.http import ObservedApp, create_app
from platform_common.mcp import McpApp, McpTool, ToolContext
from tests.registry.conftest import settings_for, tool
from tests.servers import running_server
from tool_registry.app import build_app
from tool_registry.audit import AuditLog
from tool_registry.policy import PolicyError, access_for, like_pattern, parse

ISSUER = "https://issuer.test"
KEY = RSAKey.generate_key(2048, parameters={"kid": "policy-test"})
ALL = "registry:read registry:write registry:call registry:audit"
AGENT = "registry:read registry:call"

POLICY = """
rules:
  - name: platform team
    match: {groups: [platform]}
    see: ["*"]
    call: ["*"]
    call_destructive: ["gh.delete_*"]
  - name: developers
    match: {groups: [developers]}
    call: ["gh.*"]
  - name: bob
    match: {subjects: [bob]}
    see: ["jira.read_*"]
    call: ["jira.read_*"]
"""


class TextArgs(msgspec.Struct):
    text: str = ""


class Done(msgspec.Struct):
    done: str


# Every upstream tool invocation, in order: proves which calls reached an upstream.
UPSTREAM_CALLS: list[str] = []


def upstream(tools: dict[str, bool]) -> Litestar:
    """An MCP server whose tools (name → destructive) answer with their own name."""

    def handler(name: str) -> Any:
        async def run(args: TextArgs, _: ToolContext) -> Done:
            UPSTREAM_CALLS.append(name)
            return Done(f"{name}:{args.text}")

        return run

    mcp = McpApp(
        name="upstream",
        version="1.0.0",
        instructions="",
        tools=[
            McpTool(
                name=name,
                description=f"{name.replace('_', ' ')} of the project tracker issue repository ticket",
                arguments=TextArgs,
                result=Done,
                handler=handler(name),
                read_only=not destructive,
                destructive=destructive,
            )
            for name, destructive in tools.items()
        ],
    )
    return create_app(route_handlers=[mcp.route()], lifespan=[mcp.lifespan])


def token(subject: str, scope: str, groups: list[str] | None = None) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {"iss": ISSUER, "aud": "mcp-platform", "sub": subject, "scope": scope}
    claims |= {"iat": now, "nbf": now, "exp": now + 600}
    if groups is not None:
        claims["groups"] = groups
    return jwt.encode({"alg": "RS256", "kid": KEY.kid}, claims, KEY, algorithms=["RS256"])


def bearer(subject: str, scope: str, groups: list[str] | None = None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(subject, scope, groups)}"}


EVERYTHING = ["gh.delete_repo", "gh.read_issue", "jira.create_ticket", "jira.readXall", "jira.read_ticket"]
ADMIN = bearer("admin", ALL, ["platform"])
ALICE = bearer("alice", AGENT, ["developers"])
BOB = bearer("bob", AGENT)


class ConfigMapDir:
    """A directory laid out like a kubelet ConfigMap volume: the file is a symlink through ``..data``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.version = 0
        self.root.mkdir()
        (root / "policy.yaml").symlink_to("..data/policy.yaml")

    @property
    def path(self) -> str:
        return str(self.root / "policy.yaml")

    def write(self, content: str) -> None:
        """New content in a fresh directory, then an atomic rename of the ``..data`` symlink (as kubelet does)."""
        self.version += 1
        target = self.root / f"..v{self.version}"
        target.mkdir()
        (target / "policy.yaml").write_text(content)
        (self.root / "..data_tmp").symlink_to(target.name)
        (self.root / "..data_tmp").rename(self.root / "..data")


async def until(condition: Any, seconds: float = 15.0) -> None:
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


@pytest.fixture(scope="module")
def jwks_url() -> Iterator[str]:
    @get("/jwks.json", sync_to_thread=False)
    def jwks() -> dict[str, Any]:
        return {"keys": [KEY.as_dict(private=False)]}

    with running_server(create_app(route_handlers=[jwks])) as url:
        yield f"{url}/jwks.json"


@pytest.fixture
def upstreams() -> Iterator[dict[str, str]]:
    with (
        running_server(upstream({"read_issue": False, "delete_repo": True})) as gh,
        running_server(upstream({"read_ticket": False, "create_ticket": False})) as jira,
    ):
        yield {"gh": f"{gh}/mcp", "jira": f"{jira}/mcp"}


@pytest.fixture
def policy_dir(tmp_path: Path) -> ConfigMapDir:
    directory = ConfigMapDir(tmp_path / "policy")
    directory.write(POLICY)
    return directory


@pytest.fixture
async def registry(
    database_url: str, jwks_url: str, policy_dir: ConfigMapDir, upstreams: dict[str, str]
) -> AsyncIterator[str]:
    settings = settings_for(
        database_url,
        auth_mode="jwt",
        auth_jwks_url=jwks_url,
        auth_issuer=ISSUER,
        auth_audience="mcp-platform",
        rate_limit_per_minute=0,
        policy_file=policy_dir.path,
        policy_reload_seconds=0.2,
    )
    with running_server(ObservedApp(build_app(settings))) as url:
        async with httpx.AsyncClient(base_url=url, headers=ADMIN, timeout=60) as http:
            for name, server in upstreams.items():
                body = {"name": name, "url": server, "auto_approve": True}
                assert (await http.post("/api/v1/servers", json=body)).status_code == 201
                assert (await http.post(f"/api/v1/servers/{name}/sync")).status_code == 200
            # A name that `jira.read_*` must not match: LIKE's `_` is escaped, `.` is literal.
            assert (await http.post("/api/v1/tools", json=tool("jira.readXall", category="jira"))).status_code == 201
            await until(lambda: searched(http, ADMIN, EVERYTHING))  # synced tools are embedded in the background
        yield url


@asynccontextmanager
async def mcp_session(url: str, headers: dict[str, str]) -> AsyncIterator[Client]:
    """The official SDK client on the registry's /mcp, sending ``headers`` (the bearer token)."""
    http = httpx2.AsyncClient(headers=headers, timeout=60)
    async with http, Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client:
        yield client


async def search_names(http: httpx.AsyncClient, headers: dict[str, str], limit: int = 10) -> list[str]:
    response = await http.post(
        "/api/v1/search", json={"query": "issue ticket repository", "limit": limit}, headers=headers
    )
    assert response.status_code == 200, response.text
    return sorted(hit["name"] for hit in response.json()["results"])


async def searched(http: httpx.AsyncClient, headers: dict[str, str], expected: list[str]) -> bool:
    return await search_names(http, headers) == expected


async def list_all(http: httpx.AsyncClient, headers: dict[str, str]) -> list[str]:
    """Every listed name, one per page: each page must be full until the last."""
    names: list[str] = []
    cursor = None
    while True:
        params = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        page = (await http.get("/api/v1/tools", params=params, headers=headers)).json()
        assert len(page["tools"]) == 1 or not names, page
        names += [t["name"] for t in page["tools"]]
        cursor = page["next_cursor"]
        if not cursor:
            return names


# --------------------------------------------------------------------------------------------- unit


def test_groups_come_from_the_configured_claim() -> None:
    claims = {"sub": "a", "scope": "x", "groups": ["dev", 3], "realm_access": {"roles": "ops admins"}}
    assert principal_from_claims(claims).groups == {"dev"}
    assert principal_from_claims(claims, "realm_access.roles").groups == {"ops", "admins"}
    assert principal_from_claims(claims, "missing.path").groups == frozenset()
    assert principal_from_claims({"sub": "a", "groups": {"not": "a list"}}).groups == frozenset()


def test_rights_are_the_union_of_matching_rules_and_call_implies_see() -> None:
    policy = parse(POLICY.encode(), "test")
    alice = access_for(policy, Principal("alice", frozenset({"registry:read"}), groups=frozenset({"developers"})))
    assert alice.sees("gh.read_issue") and alice.may_call("gh.read_issue", destructive=False)
    assert not alice.may_call("gh.delete_repo", destructive=True)
    assert not alice.sees("jira.read_ticket") and alice.like_patterns() == ["gh.%"]
    bob = access_for(policy, Principal("bob", frozenset()))
    assert bob.sees("jira.read_ticket") and not bob.sees("jira.readXall") and not bob.sees("jira.create_ticket")
    assert bob.like_patterns() == ["jira.read\\_%"]
    nobody = access_for(policy, Principal("carol", frozenset({"registry:read"})))
    assert nobody.like_patterns() == [] and not nobody.sees("gh.read_issue")
    assert like_pattern("a_b?.*") == "a\\_b_.%"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("rules: [{see: ['gh.[a]*']}]", "$.rules[0].see[0]"),
        ("rules: [{match: {group: [x]}}]", "unknown field `group`"),
        ("rules: {}", "Expected `array`, got `object` - at `$.rules`"),
        ("rules: [{see: *}]", "not valid YAML or JSON"),
        ('{"rules": [{"call_destructive": "gh.*"}]}', "$.rules[0].call_destructive"),
        ("[]", "Expected `object`"),
    ],
)
def test_invalid_policies_are_named_precisely(content: str, message: str) -> None:
    with pytest.raises(PolicyError) as error:
        parse(content.encode(), "/etc/policy.yaml")
    assert str(error.value).startswith("POLICY_FILE /etc/policy.yaml: ") and message in str(error.value)


def test_an_invalid_policy_file_stops_the_app(database_url: str, tmp_path: Path) -> None:
    broken = tmp_path / "policy.yaml"
    broken.write_text("rules: [{sea: ['*']}]")
    with pytest.raises(PolicyError, match=r"policy.yaml: Object contains unknown field `sea` - at `\$.rules\[0\]`"):
        build_app(settings_for(database_url, policy_file=str(broken)))
    with pytest.raises(PolicyError, match="cannot read it"):
        build_app(settings_for(database_url, policy_file=str(tmp_path / "absent.yaml")))


# --------------------------------------------------------------------------------------------- REST


async def test_rest_views_follow_the_policy(registry: str) -> None:
    async with httpx.AsyncClient(base_url=registry, timeout=60) as http:
        everything = EVERYTHING
        assert await search_names(http, ALICE) == ["gh.delete_repo", "gh.read_issue"]
        # top-k is taken among the visible tools, not cut down after the search
        assert await search_names(http, BOB, limit=1) == ["jira.read_ticket"]
        assert await list_all(http, ALICE) == ["gh.delete_repo", "gh.read_issue"]
        assert await list_all(http, BOB) == ["jira.read_ticket"]
        assert await list_all(http, ADMIN) == everything

        hidden = await http.get("/api/v1/tools/gh.read_issue", headers=BOB)
        absent = await http.get("/api/v1/tools/gh.no_such_tool", headers=BOB)
        assert hidden.status_code == absent.status_code == 404
        assert hidden.json()["detail"] == absent.json()["detail"].replace("gh.no_such_tool", "gh.read_issue")
        assert (await http.get("/api/v1/tools/gh.read_issue/history", headers=BOB)).json() == []
        assert (await http.get("/api/v1/tools/gh.read_issue/history", headers=ALICE)).json()
        assert (await http.get("/api/v1/tools/jira.read_ticket", headers=BOB)).status_code == 200

        categories = (await http.get("/api/v1/categories", headers=BOB)).json()
        assert categories == {"categories": [{"name": "jira", "tools": 1}]}
        stats = (await http.get("/api/v1/stats", headers=BOB)).json()
        assert stats["total"] == 1 and stats["by_source"] == {"jira": 1} and stats["categories"] == 1
        assert (await http.get("/api/v1/stats", headers=ADMIN)).json()["total"] == 5


# --------------------------------------------------------------------------------------------- MCP


async def test_mcp_views_and_calls_follow_the_policy(registry: str) -> None:
    async with mcp_session(registry, BOB) as bob, mcp_session(registry, ALICE) as alice:
        found = await bob.call_tool("find_tools", {"query": "issue ticket repository", "limit": 10})
        assert [hit["name"] for hit in found.structured_content["results"]] == ["jira.read_ticket"]
        found = await alice.call_tool("find_tools", {"query": "issue ticket repository", "limit": 10})
        assert sorted(hit["name"] for hit in found.structured_content["results"]) == ["gh.delete_repo", "gh.read_issue"]
        listed = await bob.call_tool("list_tools", {})
        assert [t["name"] for t in listed.structured_content["tools"]] == ["jira.read_ticket"]
        description = next(t.description for t in (await bob.list_tools()).tools if t.name == "find_tools")
        assert description and description.endswith("Categories: jira.")
        resource = await bob.read_resource("registry://categories")
        assert json.loads(resource.contents[0].text) == {"categories": [{"name": "jira", "tools": 1}]}  # type: ignore[union-attr]

        hidden = await bob.call_tool("get_tool", {"name": "gh.read_issue"})
        assert hidden.is_error and "No tool named 'gh.read_issue'" in hidden.content[0].text  # type: ignore[union-attr]

        # A hidden tool's call fails exactly like a call to a tool that does not exist: no oracle.
        hidden_call = await bob.call_tool("call_tool", {"name": "gh.read_issue", "arguments": {"text": "x"}})
        absent_call = await bob.call_tool("call_tool", {"name": "gh.read_issuf", "arguments": {"text": "x"}})
        assert hidden_call.is_error and absent_call.is_error
        assert hidden_call.content[0].text == absent_call.content[0].text.replace("issuf", "issue")  # type: ignore[union-attr]

        called = await bob.call_tool("call_tool", {"name": "jira.read_ticket", "arguments": {"text": "T-1"}})
        assert called.structured_content["structured_content"] == {"done": "read_ticket:T-1"}
        called = await alice.call_tool("call_tool", {"name": "gh.read_issue", "arguments": {"text": "#7"}})
        assert called.structured_content["structured_content"] == {"done": "read_issue:#7"}

        # Destructive tools need an explicit call_destructive grant; alice's `call: gh.*` is not one.
        refused = await alice.call_tool("call_tool", {"name": "gh.delete_repo", "arguments": {}})
        assert refused.is_error and "call_destructive" in refused.content[0].text  # type: ignore[union-attr]
    async with mcp_session(registry, ADMIN) as admin:
        deleted = await admin.call_tool("call_tool", {"name": "gh.delete_repo", "arguments": {"text": "old"}})
        assert deleted.structured_content["structured_content"] == {"done": "delete_repo:old"}


async def test_default_policy_hides_nothing_and_gates_destructive_tools(
    database_url: str, upstreams: dict[str, str]
) -> None:
    """No POLICY_FILE, AUTH_MODE=none (a local run): everything visible, non-destructive tools callable."""
    with running_server(ObservedApp(build_app(settings_for(database_url)))) as url:
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            body = {"name": "gh", "url": upstreams["gh"], "auto_approve": True}
            assert (await http.post("/api/v1/servers", json=body)).status_code == 201
            assert (await http.post("/api/v1/servers/gh/sync")).status_code == 200
            await until(lambda: searched(http, {}, ["gh.delete_repo", "gh.read_issue"]))
        async with mcp_session(url, {}) as client:
            ok = await client.call_tool("call_tool", {"name": "gh.read_issue", "arguments": {"text": "a"}})
            assert not ok.is_error, ok.content
            refused = await client.call_tool("call_tool", {"name": "gh.delete_repo", "arguments": {"text": "a"}})
            assert refused.is_error and "call_destructive" in refused.content[0].text  # type: ignore[union-attr]


# --------------------------------------------------------------------------------------------- reload


async def test_policy_reloads_without_restart_and_keeps_the_last_good_one(
    registry: str, policy_dir: ConfigMapDir
) -> None:
    def errors() -> float:
        return REGISTRY.get_sample_value("registry_policy_reload_errors_total") or 0.0

    async with httpx.AsyncClient(base_url=registry, timeout=60) as http:
        assert await search_names(http, BOB) == ["jira.read_ticket"]
        policy_dir.write(POLICY.replace('see: ["jira.read_*"]', 'see: ["jira.*"]'))

        async def bob_sees_all_of_jira() -> bool:
            return await search_names(http, BOB) == ["jira.create_ticket", "jira.readXall", "jira.read_ticket"]

        await until(bob_sees_all_of_jira)
        before = errors()
        policy_dir.write("rules:\n  - see: [unclosed\n")

        async def two_errors_were_counted() -> bool:
            return errors() >= before + 2  # two failed checks, 0.2 s apart

        await until(two_errors_were_counted)
        assert await bob_sees_all_of_jira()  # the last good policy is still in force
        stamp = REGISTRY.get_sample_value("registry_policy_last_reload_success_timestamp") or 0.0
        assert time.time() - stamp > 0.3  # not refreshed by the failed checks

        policy_dir.write(POLICY)

        async def bob_is_back_to_read_only() -> bool:
            return await search_names(http, BOB) == ["jira.read_ticket"]

        await until(bob_is_back_to_read_only)


# --------------------------------------------------------------------------------------------- audit


async def test_every_call_is_audited_and_readable_with_the_audit_scope(
    registry: str, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tool_registry.audit")
    secret_arguments = {"text": "s3cret-token-value", "b": [1, {"z": 1, "a": "é"}]}
    async with mcp_session(registry, BOB) as bob:
        await bob.call_tool("call_tool", {"name": "jira.read_ticket", "arguments": secret_arguments})
        await bob.call_tool("call_tool", {"name": "gh.read_issue", "arguments": {}})
        await bob.call_tool("call_tool", {"name": "jira.read_ticket", "arguments": {"text": 5}})
    async with mcp_session(registry, ALICE) as alice:
        await alice.call_tool("call_tool", {"name": "gh.delete_repo", "arguments": {}})

    async with httpx.AsyncClient(base_url=registry, timeout=60) as http:
        assert (await http.get("/api/v1/audit", headers=BOB)).status_code == 403
        response = await http.get("/api/v1/audit", headers=ADMIN)
        assert response.status_code == 200, response.text
        assert "s3cret" not in response.text
        entries = response.json()["entries"]
        summary = [(e["subject"], e["tool"], e["upstream"], e["outcome"]) for e in entries]
        assert summary == [
            ("alice", "gh.delete_repo", "gh", "denied"),
            ("bob", "jira.read_ticket", "jira", "error"),  # arguments failed the input schema
            ("bob", "gh.read_issue", None, "not_found"),  # hidden: not even its upstream is named
            ("bob", "jira.read_ticket", "jira", "ok"),
        ]
        canonical = json.dumps(secret_arguments, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert entries[3]["arguments_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
        assert all(e["latency_ms"] >= 0 and e["principal_kind"] == "jwt" for e in entries)

        first = (await http.get("/api/v1/audit", params={"subject": "bob", "limit": 2}, headers=ADMIN)).json()
        assert [e["outcome"] for e in first["entries"]] == ["error", "not_found"]
        rest = await http.get("/api/v1/audit", params={"subject": "bob", "cursor": first["next_cursor"]}, headers=ADMIN)
        assert [e["outcome"] for e in rest.json()["entries"]] == ["ok"] and rest.json()["next_cursor"] is None
        denied = await http.get("/api/v1/audit", params={"outcome": "denied"}, headers=ADMIN)
        assert [e["subject"] for e in denied.json()["entries"]] == ["alice"]

    lines = [r for r in caplog.records if getattr(r, "audit", None) == "call_tool"]
    assert [(r.subject, r.tool, r.outcome) for r in lines] == [  # type: ignore[attr-defined]
        (s, t, o) for s, t, _, o in reversed(summary)
    ]
    assert not any("s3cret" in str(vars(r)) for r in lines)

    # Retention: rows older than AUDIT_RETENTION_DAYS go, the others stay.
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE tool_call_audit SET at = now() - interval '31 days' WHERE subject = 'alice'")
    finally:
        await conn.close()
    database = Database(database_url)
    try:
        assert await AuditLog(database, retention_days=30).sweep() == 1
    finally:
        await database.close()
    async with httpx.AsyncClient(base_url=registry, timeout=60) as http:
        remaining = (await http.get("/api/v1/audit", headers=ADMIN)).json()["entries"]
        assert {e["subject"] for e in remaining} == {"bob"} and len(remaining) == 3


async def test_a_call_that_cannot_be_audited_is_not_made(registry: str) -> None:
    """The pending row is written before the upstream is contacted; if it cannot be, nothing is called.

    PostgreSQL text cannot hold NUL, so a (validly signed) subject containing one cannot be audited.
    """
    unauditable = bearer("eve\u0000", AGENT, ["platform"])
    before = len(UPSTREAM_CALLS)
    async with mcp_session(registry, unauditable) as eve:
        refused = await eve.call_tool("call_tool", {"name": "gh.read_issue", "arguments": {"text": "x"}})
    assert refused.is_error and "NUL" in refused.content[0].text  # type: ignore[union-attr]
    assert len(UPSTREAM_CALLS) == before
    async with mcp_session(registry, ADMIN) as admin:
        called = await admin.call_tool("call_tool", {"name": "gh.read_issue", "arguments": {"text": "x"}})
    assert not called.is_error and UPSTREAM_CALLS[before:] == ["read_issue"]
    async with httpx.AsyncClient(base_url=registry, timeout=60) as http:
        entries = (await http.get("/api/v1/audit", headers=ADMIN)).json()["entries"]
    assert [(e["subject"], e["outcome"]) for e in entries] == [("admin", "ok")]
