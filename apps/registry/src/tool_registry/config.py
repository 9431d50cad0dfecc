"""The Tool Registry's settings (environment variables and ``tool-registry`` flags)."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

import msgspec

from platform_common.settings import BaseSettings, SettingsError
from tool_registry.egress import EgressPolicy


class RegistrySettings(BaseSettings, frozen=True, kw_only=True):
    port: Annotated[int, msgspec.Meta(ge=1, le=65535, description="API port.")] = 8000
    auth_audience: Annotated[
        str, msgspec.Meta(description="Expected token audience (aud): tokens minted for another service are refused.")
    ] = "tool-registry"
    max_request_bytes: Annotated[
        int, msgspec.Meta(ge=1024, description="Largest request body accepted (bulk imports are large).")
    ] = 16_777_216
    database_read_url: Annotated[
        str, msgspec.Meta(description="Optional read-replica URL for searches and reads (secret).")
    ] = ""
    embedding_provider: Annotated[
        Literal["local", "openai"],
        msgspec.Meta(description="local: in-process MiniLM; openai: any OpenAI-compatible /v1/embeddings."),
    ] = "local"
    embedding_endpoint_url: Annotated[
        str, msgspec.Meta(description="Base URL of the OpenAI-compatible embedding service.")
    ] = ""
    embedding_api_key: Annotated[str, msgspec.Meta(description="API key for the embedding service (secret).")] = ""
    embedding_model: Annotated[str, msgspec.Meta(description="Embedding model name.")] = "all-MiniLM-L6-v2"
    embedding_dimension: Annotated[
        int, msgspec.Meta(ge=1, le=4096, description="Dimension of the model's vectors.")
    ] = 384
    enable_cache: Annotated[bool, msgspec.Meta(description="Cache query embeddings in memory (LRU).")] = True
    embedding_threads: Annotated[
        int,
        msgspec.Meta(
            ge=0,
            le=256,
            description="Threads of the local model's runs. 0: the CPU limit (cgroup cpu.max, else the CPUs "
            "this process may run on).",
        ),
    ] = 0
    upstream_allowed_hosts: Annotated[
        list[str],
        msgspec.Meta(
            description="Comma-separated hosts upstream MCP servers may live on: names, *.suffix, IPs, CIDRs. "
            "Names must resolve to public addresses; a non-public one must be listed as an IP or CIDR."
        ),
    ] = msgspec.field(default_factory=list)
    upstream_allowed_ports: Annotated[
        list[str], msgspec.Meta(description="Comma-separated ports or ranges (8000-8099) upstream URLs may use.")
    ] = msgspec.field(default_factory=lambda: ["443", "80"])
    upstream_max_tools: Annotated[
        int, msgspec.Meta(ge=1, le=100_000, description="Most tools one upstream may list; more fails its sync.")
    ] = 1000
    upstream_sync_interval_seconds: Annotated[
        int, msgspec.Meta(ge=10, description="Seconds between upstream re-syncs.")
    ] = 300
    api_keys: Annotated[
        list[str], msgspec.Meta(description="Comma-separated SHA-256 hex digests of bootstrap API keys (secret).")
    ] = msgspec.field(default_factory=list)
    auth_groups_claim: Annotated[
        str,
        msgspec.Meta(
            pattern=r"^[A-Za-z0-9_:/.-]{1,200}$",
            description="Token claim (a dotted path, e.g. realm_access.roles) holding the caller's groups for "
            "POLICY_FILE rules.",
        ),
    ] = "groups"
    policy_file: Annotated[
        str,
        msgspec.Meta(
            description="Per-tool authorization policy, YAML or JSON (docs/security.md). Empty: everyone sees "
            "every tool and may call the non-destructive ones."
        ),
    ] = ""
    policy_reload_seconds: Annotated[
        float, msgspec.Meta(gt=0, le=3600, description="Seconds between checks of POLICY_FILE for changes.")
    ] = 5.0
    audit_retention_days: Annotated[
        int, msgspec.Meta(ge=1, le=3650, description="Days the call_tool audit log keeps its rows.")
    ] = 30
    public_url: Annotated[
        str,
        msgspec.Meta(
            description="Public base URL (e.g. https://registry.example.com) in RFC 9728 metadata and 401 challenges. "
            "Empty: the request's scheme and Host (local runs only)."
        ),
    ] = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        url = urlsplit(self.public_url)
        if self.public_url and (url.scheme not in ("http", "https") or not url.hostname or url.query or url.fragment):
            raise SettingsError(f"PUBLIC_URL must be an absolute http(s) URL, got {self.public_url!r}")
        try:
            EgressPolicy.parse(self.upstream_allowed_hosts, self.upstream_allowed_ports)
        except ValueError as exc:
            raise SettingsError(f"UPSTREAM_ALLOWED_HOSTS/UPSTREAM_ALLOWED_PORTS: {exc}") from exc
