"""The shapes the registry reads and writes, as msgspec Structs (REST bodies, MCP results, CLI files).

Size limits live here as ``msgspec.Meta`` constraints, so they are checked while decoding (before
anything touches the database) and documented in the OpenAPI schema. Input Structs forbid unknown
fields: a misspelt field is an error, not silently dropped data.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"
# Semantic Versioning 2.0.0 (semver.org's own regular expression).
SEMVER_PATTERN = (
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?"
    r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
)
MAX_SCHEMA_BYTES = 65_536

Name = Annotated[str, Meta(min_length=1, max_length=128, pattern=NAME_PATTERN, examples=["github.create_issue"])]
Title = Annotated[str, Meta(max_length=256)]
Description = Annotated[str, Meta(max_length=4096)]
Category = Annotated[str, Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_. -]+$", examples=["finance"])]
Tag = Annotated[str, Meta(min_length=1, max_length=64)]
Tags = Annotated[list[Tag], Meta(max_length=32)]
Example = Annotated[str, Meta(min_length=1, max_length=512)]
Examples = Annotated[
    list[Example], Meta(max_length=20, description="Example user requests this tool serves (they count in search).")
]
Version = Annotated[str, Meta(max_length=64, pattern=SEMVER_PATTERN, examples=["1.2.0"])]
JsonSchema = Annotated[dict[str, Any], Meta(description="A JSON Schema object (type: object), at most 64 KiB.")]
WritableStatus = Literal["active", "deprecated"]
Status = Literal["active", "deprecated", "deleted"]
Query = Annotated[str, Meta(min_length=1, max_length=1000)]


class ToolAnnotations(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True, rename="camel"):
    """MCP tool annotations (hints for clients; never trusted for security decisions)."""

    title: Title | None = None
    read_only_hint: bool | None = None
    destructive_hint: bool | None = None
    idempotent_hint: bool | None = None
    open_world_hint: bool | None = None


class ToolIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A tool as written by POST and PUT."""

    name: Name
    input_schema: JsonSchema
    title: Title = ""
    description: Description = ""
    category: Category = "general"
    tags: Tags = msgspec.field(default_factory=list)
    output_schema: JsonSchema | None = None
    annotations: ToolAnnotations | None = None
    version: Version = "1.0.0"
    status: WritableStatus = "active"
    examples: Examples = msgspec.field(default_factory=list)


class PrecomputedEmbedding(msgspec.Struct, forbid_unknown_fields=True):
    """A vector computed elsewhere (bulk loads); used only when ``model`` is the configured model."""

    model: Annotated[str, Meta(min_length=1, max_length=200)]
    vector: Annotated[list[float], Meta(min_length=1, max_length=4096)]


class ToolImport(ToolIn, forbid_unknown_fields=True, kw_only=True):
    """One item of a bulk import: a tool, optionally with its precomputed embedding."""

    embedding: PrecomputedEmbedding | None = None


class ToolPatch(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """PATCH: only the fields present change (``null`` clears the optional ones)."""

    title: Title | UnsetType = UNSET
    description: Description | UnsetType = UNSET
    category: Category | UnsetType = UNSET
    tags: Tags | UnsetType = UNSET
    input_schema: JsonSchema | UnsetType = UNSET
    output_schema: JsonSchema | UnsetType | None = UNSET
    annotations: ToolAnnotations | UnsetType | None = UNSET
    version: Version | UnsetType = UNSET
    status: WritableStatus | UnsetType = UNSET
    examples: Examples | UnsetType = UNSET


class Provenance(msgspec.Struct, kw_only=True):
    """Where an upstream tool's description and schemas come from: text written by that server,
    not by the registry, served in the version whose digest was approved."""

    upstream: str
    approved_digest: str | None


def provenance(source: str, approved_digest: str | None) -> Provenance | None:
    """``None`` for tools written by the registry's own admins (``source`` 'manual')."""
    return None if source == "manual" else Provenance(upstream=source, approved_digest=approved_digest)


class Tool(msgspec.Struct, kw_only=True):
    """A tool as the registry reports it."""

    name: str
    title: str
    description: str
    category: str
    tags: list[str]
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    annotations: ToolAnnotations | None
    version: str
    status: Status
    examples: list[str]
    source: str
    created_at: datetime
    updated_at: datetime
    provenance: Provenance | None = None


class ToolPage(msgspec.Struct):
    """One page of a listing; pass ``next_cursor`` back as ``cursor`` for the next one."""

    tools: list[Tool]
    next_cursor: str | None = None


class ImportResult(msgspec.Struct):
    created: int
    replaced: int
    embeddings_pending: int = 0


class HistoryEntry(msgspec.Struct):
    operation: str
    actor: str
    at: datetime
    before: dict[str, Any] | None
    after: dict[str, Any] | None


class SearchRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    query: Query
    limit: Annotated[int, Meta(ge=1, le=50)] = 10
    category: Category | None = None
    tags: Annotated[list[Tag], Meta(max_length=32)] = msgspec.field(default_factory=list)
    mode: Literal["hybrid", "vector", "text"] = "hybrid"
    min_score: Annotated[float, Meta(ge=0, le=1)] = 0.0


class SearchHit(msgspec.Struct, kw_only=True):
    name: str
    score: Annotated[float, Meta(description="Calibrated relevance in [0, 1], comparable across queries.")]
    title: str
    description: str
    category: str
    tags: list[str]
    version: str
    status: Status
    source: str
    provenance: Provenance | None = None


class SearchResponse(msgspec.Struct):
    results: list[SearchHit]
    mode: str
    model: str | None = None


class CategoryCount(msgspec.Struct):
    name: str
    tools: int


class Categories(msgspec.Struct):
    categories: list[CategoryCount]


class ModelState(msgspec.Struct):
    model: str
    dimension: int
    embedded_tools: int
    ready: bool
    pending_embeddings: Annotated[
        int,
        Meta(
            description="Tools (not deleted) without this model's vector of their current text: 0 means every "
            "tool is searchable by its current description with this model (wait for it after an import)."
        ),
    ] = 0


class Stats(msgspec.Struct):
    total: int
    by_status: dict[str, int]
    by_source: dict[str, int]
    categories: int
    search_model: str | None
    configured_model: str
    models: list[ModelState]
    upstream_servers: int


class ServerIn(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """An upstream MCP server. The secret itself is never sent: ``credential`` names ``<NAME>``, and the
    registry reads the bearer token from its variable ``UPSTREAM_CREDENTIAL_<NAME>``."""

    name: Annotated[str, Meta(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    url: Annotated[str, Meta(min_length=8, max_length=2048, pattern=r"^https?://")]
    credential: (
        Annotated[
            str,
            Meta(
                pattern=r"^[A-Z0-9_]{1,64}$",
                description="<NAME> of the registry's UPSTREAM_CREDENTIAL_<NAME> variable holding the bearer token.",
            ),
        ]
        | None
    ) = None
    allow_insecure_http: Annotated[
        bool, Meta(description="Let the credential travel over plain http://, to a loopback host only (tests, dev).")
    ] = False
    auto_approve: Annotated[
        bool, Meta(description="Trusted upstream: apply new and changed tools at sync without review.")
    ] = False
    on_change: Annotated[
        Literal["keep", "disable"],
        Meta(description="While a changed tool awaits review: keep serving the approved version, or disable it."),
    ] = "keep"
    auth_env: Annotated[str | None, Meta(description="Removed (any value is refused): use credential.")] = None


class Server(msgspec.Struct, kw_only=True):
    name: str
    url: str
    credential: str | None
    allow_insecure_http: bool
    auto_approve: bool
    on_change: str
    created_at: datetime
    last_sync_at: datetime | None
    last_sync_error: str | None
    tool_count: int


class SyncResult(msgspec.Struct):
    server: str
    created: int
    updated: int
    unchanged: int
    deactivated: int
    held: Annotated[int, Meta(description="New or changed tools now waiting for review.")] = 0


class PendingTool(msgspec.Struct, kw_only=True):
    """A version of an upstream tool waiting for an admin's approval."""

    server: str
    upstream_name: str
    tool: str
    change: Literal["new", "changed"]
    digest: str
    approved_digest: str | None
    definition: ToolIn
    first_seen_at: datetime
    last_seen_at: datetime


class Approval(msgspec.Struct, forbid_unknown_fields=True):
    """The digest the admin reviewed: approval fails (409) if the pending version changed since."""

    digest: Annotated[str, Meta(pattern=r"^sha256:[0-9a-f]{64}$")]
