"""The catalogue repository: every SQL statement that reads or writes tools, their history and vectors.

Functions take an asyncpg connection, so callers choose the pool (primary or read replica) and the
transaction. Each write records a history row in the same statement as the change, so a change
without its history row cannot exist.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import re
from collections.abc import Sequence
from typing import Any

import asyncpg
import jsonschema
import msgspec
import numpy as np

from platform_common.db import advisory_key
from platform_common.problems import ProblemError
from tool_registry.embeddings import content_hash
from tool_registry.models import (
    MAX_SCHEMA_BYTES,
    Categories,
    CategoryCount,
    HistoryEntry,
    ImportResult,
    ModelState,
    Stats,
    Tool,
    ToolAnnotations,
    ToolImport,
    ToolIn,
    ToolPage,
    ToolPatch,
    provenance,
)
from tool_registry.validation import schema_problem

# The columns a Tool is built from (``t`` is the tools row).
TOOL_COLUMNS = (
    "t.name, t.title, t.description, t.category, t.tags, t.input_schema, t.output_schema, t.annotations, "
    "t.version, t.status, t.examples, t.source, t.created_at, t.updated_at, t.approved_digest"
)
# What a history row keeps of a tool: everything but the derived search document.
_SNAPSHOT = "- 'search_text'"
# How much the description's vector outweighs one example's in a tool's vector (docs/search.md).
DESCRIPTION_WEIGHT = 2.0


class ToolNotFound(ProblemError):
    def __init__(self, name: str) -> None:
        super().__init__(404, "Tool not found", detail=f"No tool named '{name}'.")


def invalid(title: str, errors: list[dict[str, Any]]) -> ProblemError:
    """422 with one entry per problem, each naming the field (``key``) it is about."""
    return ProblemError(
        422, title, detail="; ".join(f"{e['key']}: {e['message']}" for e in errors)[:1000], errors=errors
    )


def embedding_texts(name: str, title: str, description: str, examples: Sequence[str]) -> list[str]:
    """The texts a tool's vector is computed from: its headline and description, then its examples.

    Names are split at camelCase and punctuation ("WeatherTool" → "Weather Tool"): MiniLM's
    tokenizer does not split them itself, and the split measured better (docs/search.md).
    """
    head = title or re.sub(r"[_.\-]+", " ", re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name))
    return [f"{head}: {description}", *examples]


def tool_hash(item: ToolIn) -> str:
    return content_hash(embedding_texts(item.name, item.title, item.description, item.examples))


def check_schemas(item: ToolIn, prefix: str = "") -> list[dict[str, Any]]:
    """Problems with the tool's JSON Schemas: each must be a valid schema of an object, ≤ 64 KiB."""
    errors = []
    for key, schema in (("input_schema", item.input_schema), ("output_schema", item.output_schema)):
        if schema is None:
            continue
        encoded = msgspec.json.encode(schema)
        if len(encoded) > MAX_SCHEMA_BYTES:
            errors.append({"key": prefix + key, "message": f"larger than {MAX_SCHEMA_BYTES} bytes"})
        elif problem := _schema_problem(key, encoded):
            errors.append({"key": prefix + key, "message": problem})
    return errors


@functools.lru_cache(maxsize=1024)
def _schema_problem(key: str, encoded: bytes) -> str | None:
    """Why the schema (JSON) cannot be the tool's ``key``, or ``None``.

    Cached by the schema's bytes: checking a schema against the metaschema costs ~0.5 ms, and the
    tools of a bulk import (or an upstream) often share their schemas.
    """
    schema = msgspec.json.decode(encoded)
    if schema.get("type") != "object":
        return 'must be a JSON Schema with "type": "object"'
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return f"not a valid JSON Schema: {exc.message}"[:500]
    # Arguments are checked with a linear-time regex engine (validation.py): refuse schemas it cannot use.
    if key == "input_schema" and (problem := schema_problem(schema)):
        return f"not usable for argument checks: {problem}"[:500]
    return None


def check_tool(item: ToolIn) -> None:
    if errors := check_schemas(item):
        raise invalid("Invalid tool", errors)


def _values(item: ToolIn) -> list[Any]:
    annotations = msgspec.to_builtins(item.annotations) if item.annotations else None
    return [
        item.name,
        item.title,
        item.description,
        item.category,
        item.tags,
        item.input_schema,
        item.output_schema,
        annotations,
        item.version,
        item.status,
        item.examples,
        tool_hash(item),
    ]


def row_to_tool(row: asyncpg.Record) -> Tool:
    annotations = row["annotations"]
    return Tool(
        name=row["name"],
        title=row["title"],
        description=row["description"],
        category=row["category"],
        tags=list(row["tags"]),
        input_schema=row["input_schema"],
        output_schema=row["output_schema"],
        annotations=msgspec.convert(annotations, ToolAnnotations) if annotations else None,
        version=row["version"],
        status=row["status"],
        examples=list(row["examples"]),
        source=row["source"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        provenance=provenance(row["source"], row["approved_digest"]),
    )


def tool_in(tool: Tool) -> ToolIn:
    """The writable part of a stored tool (the base a PATCH applies to)."""
    return ToolIn(
        name=tool.name,
        input_schema=tool.input_schema,
        title=tool.title,
        description=tool.description,
        category=tool.category,
        tags=tool.tags,
        output_schema=tool.output_schema,
        annotations=tool.annotations,
        version=tool.version,
        status="deprecated" if tool.status == "deprecated" else "active",
        examples=tool.examples,
    )


async def create(
    conn: asyncpg.Connection,
    item: ToolIn,
    *,
    actor: str,
    source: str = "manual",
    upstream_name: str | None = None,
    operation: str = "create",
) -> tuple[int, Tool]:
    """Insert a new tool (409 when the name is taken); returns its id and the stored tool."""
    check_tool(item)
    sql = f"""
        WITH t AS (
            INSERT INTO tools (name, title, description, category, tags, input_schema, output_schema,
                               annotations, version, status, examples, content_hash, source, upstream_name)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
            RETURNING *
        ), history AS (
            INSERT INTO tool_history (tool_id, tool_name, operation, actor, after)
            SELECT t.id, t.name, $15, $16, to_jsonb(t) {_SNAPSHOT} FROM t
        )
        SELECT t.id, {TOOL_COLUMNS} FROM t
    """  # noqa: S608 (constant fragments only)
    try:
        row = await conn.fetchrow(sql, *_values(item), source, upstream_name, operation, actor)
    except asyncpg.UniqueViolationError as exc:
        raise ProblemError(409, "Tool exists", detail=f"A tool named '{item.name}' already exists.") from exc
    return row["id"], row_to_tool(row)


async def get(conn: asyncpg.Connection, name: str) -> Tool | None:
    row = await conn.fetchrow(f"SELECT {TOOL_COLUMNS} FROM tools t WHERE t.name = $1", name)  # noqa: S608
    return row_to_tool(row) if row else None


async def call_target(conn: asyncpg.Connection, name: str) -> tuple[str, bool] | None:
    """``(source, destructive)`` of a callable (not deleted) tool, for the gateway's policy check.

    Destructive means annotated ``destructiveHint: true`` (by its upstream or a curator).
    """
    row = await conn.fetchrow(
        "SELECT source, coalesce((annotations->>'destructiveHint')::boolean, false) AS destructive "
        "FROM tools WHERE name = $1 AND status <> 'deleted'",
        name,
    )
    return (row["source"], row["destructive"]) if row else None


async def get_with_id(conn: asyncpg.Connection, name: str, *, for_update: bool = False) -> tuple[int, Tool]:
    lock = " FOR UPDATE" if for_update else ""
    row = await conn.fetchrow(f"SELECT t.id, {TOOL_COLUMNS} FROM tools t WHERE t.name = $1{lock}", name)  # noqa: S608
    if row is None:
        raise ToolNotFound(name)
    return row["id"], row_to_tool(row)


async def replace(
    conn: asyncpg.Connection,
    name: str,
    item: ToolIn,
    *,
    actor: str,
    operation: str = "replace",
    source: str | None = None,
) -> tuple[int, Tool]:
    """Overwrite every writable field of tool ``name`` (404 when absent); a deleted tool comes back."""
    check_tool(item)
    sql = f"""
        WITH old AS (SELECT * FROM tools WHERE name = $1 FOR UPDATE),
        t AS (
            UPDATE tools t SET title = $2, description = $3, category = $4, tags = $5, input_schema = $6,
                output_schema = $7, annotations = $8, version = $9, status = $10, examples = $11,
                content_hash = $12, source = coalesce($15, t.source), updated_at = now()
            FROM old WHERE t.id = old.id
            RETURNING t.*
        ), history AS (
            INSERT INTO tool_history (tool_id, tool_name, operation, actor, before, after)
            SELECT t.id, t.name, $13, $14, to_jsonb(old) {_SNAPSHOT}, to_jsonb(t) {_SNAPSHOT}
            FROM t JOIN old ON old.id = t.id
        )
        SELECT t.id, {TOOL_COLUMNS} FROM t
    """  # noqa: S608
    values = _values(item)
    row = await conn.fetchrow(sql, name, *values[1:], operation, actor, source)
    if row is None:
        raise ToolNotFound(name)
    return row["id"], row_to_tool(row)


async def patch(conn: asyncpg.Connection, name: str, change: ToolPatch, *, actor: str) -> tuple[int, Tool]:
    """Apply the fields present in ``change`` to the stored tool, atomically (row lock)."""
    async with conn.transaction():
        _, current = await get_with_id(conn, name, for_update=True)
        fields = {k: v for k, v in msgspec.structs.asdict(change).items() if v is not msgspec.UNSET}
        merged = msgspec.structs.replace(tool_in(current), **fields)
        return await replace(conn, name, merged, actor=actor, operation="patch")


async def soft_delete(conn: asyncpg.Connection, name: str, *, actor: str) -> int:
    """Mark the tool deleted (it stays readable, leaves search and listings); returns its id."""
    sql = f"""
        WITH old AS (SELECT * FROM tools WHERE name = $1 FOR UPDATE),
        t AS (
            UPDATE tools t SET status = 'deleted', updated_at = now() FROM old WHERE t.id = old.id
            RETURNING t.*
        ), history AS (
            INSERT INTO tool_history (tool_id, tool_name, operation, actor, before, after)
            SELECT t.id, t.name, 'delete', $2, to_jsonb(old) {_SNAPSHOT}, to_jsonb(t) {_SNAPSHOT}
            FROM t JOIN old ON old.id = t.id
        )
        SELECT id FROM t
    """  # noqa: S608
    tool_id: int | None = await conn.fetchval(sql, name, actor)
    if tool_id is None:
        raise ToolNotFound(name)
    return tool_id


def check_import(items: Sequence[ToolImport], model: str, dimension: int) -> None:
    """Every problem of a bulk import at once (422), before anything is written."""
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        if item.name in seen:
            errors.append({"key": f"[{index}].name", "message": f"duplicate name '{item.name}' in this import"})
        seen.add(item.name)
        errors.extend(check_schemas(item, prefix=f"[{index}]."))
        if item.embedding is not None:
            if item.embedding.model != model:
                errors.append(
                    {"key": f"[{index}].embedding.model", "message": f"must be the configured model '{model}'"}
                )
            elif len(item.embedding.vector) != dimension:
                errors.append(
                    {
                        "key": f"[{index}].embedding.vector",
                        "message": f"has {len(item.embedding.vector)} dimensions, the model has {dimension}",
                    }
                )
        if len(errors) >= 100:
            break
    if errors:
        raise invalid("Invalid import", errors)


# The staging table a bulk import is copied into (binary COPY): the tools' columns, JSON as text, the vector
# as pgvector's binary type. Dropped at commit; a failed import rolls its creation back with everything else.
_STAGING_COLUMNS = (
    "name",
    "title",
    "description",
    "category",
    "tags",
    "input_schema",
    "output_schema",
    "annotations",
    "version",
    "status",
    "examples",
    "content_hash",
    "embedding",
)
_STAGING = """
    CREATE TEMPORARY TABLE import_items (
        name text, title text, description text, category text, tags text[], input_schema text,
        output_schema text, annotations text, version text, status text, examples text[], content_hash text,
        embedding vector
    ) ON COMMIT DROP
"""
_IMPORT = f"""
    WITH old AS (
        -- The rows as they were (the statement's snapshot); ON CONFLICT locks the ones it updates.
        SELECT tools.* FROM tools JOIN import_items USING (name)
    ), t AS (
        INSERT INTO tools AS t (name, title, description, category, tags, input_schema, output_schema,
                                annotations, version, status, examples, content_hash)
        SELECT name, title, description, category, tags, input_schema::jsonb, output_schema::jsonb,
               annotations::jsonb, version, status, examples, content_hash
        FROM import_items
        ON CONFLICT (name) DO UPDATE SET title = excluded.title, description = excluded.description,
            category = excluded.category, tags = excluded.tags, input_schema = excluded.input_schema,
            output_schema = excluded.output_schema, annotations = excluded.annotations,
            version = excluded.version, status = excluded.status, examples = excluded.examples,
            content_hash = excluded.content_hash, updated_at = now()
        RETURNING t.*
    ), history AS (
        INSERT INTO tool_history (tool_id, tool_name, operation, actor, before, after)
        SELECT t.id, t.name, 'import', $1, to_jsonb(old) {_SNAPSHOT}, to_jsonb(t) {_SNAPSHOT}
        FROM t LEFT JOIN old ON old.id = t.id
    ), vectors AS (
        INSERT INTO tool_embeddings (tool_id, model, content_hash, embedding)
        SELECT t.id, $2, t.content_hash, i.embedding
        FROM t JOIN import_items i USING (name) WHERE i.embedding IS NOT NULL
        ON CONFLICT (tool_id, model) DO UPDATE SET content_hash = excluded.content_hash,
            embedding = excluded.embedding, updated_at = now()
    )
    SELECT count(*) FILTER (WHERE old.id IS NULL) AS created,
           count(old.id) AS replaced,
           count(*) FILTER (
               WHERE i.embedding IS NULL AND NOT EXISTS (
                   SELECT 1 FROM tool_embeddings e
                   WHERE e.tool_id = t.id AND e.model = $2 AND e.content_hash = t.content_hash)
           ) AS pending
    FROM t JOIN import_items i USING (name) LEFT JOIN old ON old.id = t.id
"""  # noqa: S608 (constant fragments only)


async def import_tools(
    conn: asyncpg.Connection,
    items: Sequence[ToolImport],
    *,
    actor: str,
    model: str,
    dimension: int,
    index: str | None = None,
) -> ImportResult:
    """Create or replace every item by name in one transaction: all of them, or (on any error) none.

    The items are copied in binary (COPY, vectors in pgvector's binary format: nothing to parse) into a
    staging table, then one set-based statement upserts the tools, their history and their vectors.
    Precomputed vectors are searchable when this returns; the other tools are embedded afterwards by the
    indexer (``embeddings_pending`` of the answer, ``pending_embeddings`` of the stats), unless their
    text did not change.

    ``index`` names the model's HNSW index: an import that at least doubles the model's vectors drops it
    and builds it again over every row, in the same transaction (``_rebuild_index``).
    """
    # Validating thousands of JSON Schemas and encoding the batch is CPU work: do it off the event
    # loop so other requests (and readiness probes) keep being served during a large import.
    records = await asyncio.to_thread(_import_records, items, model, dimension)
    vectors = sum(1 for item in items if item.embedding is not None)
    async with conn.transaction():
        await conn.execute(_STAGING)
        await conn.copy_records_to_table("import_items", records=records, columns=_STAGING_COLUMNS)
        rebuild = await _rebuild_index(conn, index, model, dimension, vectors) if index else ""
        row = await conn.fetchrow(_IMPORT, actor, model, timeout=IMPORT_TIMEOUT_SECONDS)
        if rebuild:
            await conn.execute(rebuild, timeout=IMPORT_TIMEOUT_SECONDS)
    await _analyze_if_grown(conn, row["created"])
    return ImportResult(created=row["created"], replaced=row["replaced"], embeddings_pending=row["pending"])


# The advisory lock around creating or rebuilding a model's HNSW index (Indexer.prepare, _rebuild_index).
EMBEDDING_INDEX_LOCK = "registry:embedding-index"
# An import whose statements run longer fails (and rolls back); the pool's default (30 s) is for requests.
IMPORT_TIMEOUT_SECONDS = 900.0
# Imports of fewer vectors never rebuild: their insertion costs less than the table lock is worth.
REBUILD_MIN_VECTORS = 1000
# Building the graph in memory, per vector (bytes, beyond the 2-byte elements): pgvector's element and
# neighbour lists at m=16, measured ~1.2 KB per vector on disk; the build falls back to slow on-disk
# inserts for the rest of the rows when maintenance_work_mem is too small.
_BUILD_BYTES_PER_VECTOR = 1536
_BUILD_MAX_MEMORY_KB = 1024 * 1024


async def _rebuild_index(conn: asyncpg.Connection, index: str, model: str, dimension: int, vectors: int) -> str:
    """Drop the model's HNSW index for this import if it at least doubles the model's vectors; returns the
    statement that builds the index again (to run after the insert, before commit), or ``""``.

    Inserting one vector into pgvector's on-disk graph costs ~0.6 ms at 10k vectors and more as the
    graph grows (distance computations, buffer locks and WAL for every neighbour it rewires); building
    the graph in memory costs ~0.2-0.3 ms per vector, all rows included. Past doubling, the build
    wins by ~2x or more (docs/search.md, "Bulk import"). The price: ``DROP INDEX`` holds an exclusive
    lock on ``tool_embeddings`` until commit, so searches (and the indexer) wait for the import's
    whole duration; the threshold keeps that to initial loads and catalogue-sized imports. A failed
    import rolls the drop back with everything else: the index exists before and after, always.
    """
    if vectors < REBUILD_MIN_VECTORS:
        return ""
    existing: int = await conn.fetchval("SELECT count(*) FROM tool_embeddings WHERE model = $1", model)
    if vectors < existing:
        return ""
    # Serialises with Indexer.prepare (which creates the index on start-up) across replicas.
    await conn.execute("SELECT pg_advisory_xact_lock($1)", advisory_key(EMBEDDING_INDEX_LOCK))
    definition: str | None = await conn.fetchval(
        "SELECT pg_get_indexdef(c.oid) FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid "
        "WHERE c.relname = $1 AND i.indrelid = 'tool_embeddings'::regclass",
        index,
    )
    if definition is None:
        return ""
    await conn.execute(f'DROP INDEX "{index}"', timeout=IMPORT_TIMEOUT_SECONDS)
    # Enough memory for the whole graph, never less than the server's own setting. Parallel build workers
    # are left to the server (0, 1 or 2 made no difference at 10k on 2 cores: docs/search.md).
    needed_kb = min((existing + vectors) * (2 * dimension + _BUILD_BYTES_PER_VECTOR) // 1024, _BUILD_MAX_MEMORY_KB)
    await conn.execute(
        "SELECT set_config('maintenance_work_mem', greatest(setting::bigint, $1)::text || 'kB', true) "
        "FROM pg_settings WHERE name = 'maintenance_work_mem'",
        needed_kb,
    )
    return definition


async def _analyze_if_grown(conn: asyncpg.Connection, created: int) -> None:
    """Refresh the planner's statistics after an import that grew the catalogue by more than a tenth.

    With the statistics of a smaller catalogue the planner sorts every vector instead of scanning the
    HNSW index (34 ms instead of 0.5 ms per search at 10k tools) until autovacuum analyzes, a minute or
    more later. The threshold is autovacuum's own (10 % plus 50 rows), applied at once.
    """
    known = await conn.fetchval("SELECT reltuples FROM pg_class WHERE oid = 'tools'::regclass")
    if created > 50 + 0.1 * max(known, 0):
        await conn.execute("ANALYZE tools, tool_embeddings")


def _json_text(value: Any) -> str | None:
    return None if value is None else msgspec.json.encode(value).decode()


def _import_records(items: Sequence[ToolImport], model: str, dimension: int) -> list[tuple[Any, ...]]:
    """The validated batch as staging rows, in ``_STAGING_COLUMNS`` order."""
    check_import(items, model, dimension)
    records = []
    for item in items:
        values = _values(item)
        records.append(
            (
                *values[:5],
                _json_text(values[5]),
                _json_text(values[6]),
                _json_text(values[7]),
                *values[8:],
                np.asarray(item.embedding.vector, dtype=np.float32) if item.embedding else None,
            )
        )
    return records


def encode_cursor(name: str) -> str:
    return base64.urlsafe_b64encode(msgspec.json.encode({"after": name})).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        data = msgspec.json.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        after = data["after"]
        if not isinstance(after, str):
            raise TypeError
    except Exception as exc:
        raise ProblemError(400, "Invalid cursor", detail="Pass back a next_cursor value unchanged.") from exc
    return after


async def list_page(
    conn: asyncpg.Connection,
    *,
    category: str | None = None,
    tags: Sequence[str] = (),
    statuses: Sequence[str] = ("active", "deprecated"),
    source: str | None = None,
    cursor: str | None = None,
    limit: int = 50,
    names: Sequence[str] | None = None,
) -> ToolPage:
    """Tools in name order, ``limit`` at a time (keyset pagination: stable under concurrent writes).

    ``names`` are LIKE patterns of the names the caller may see (``None``: all); filtering in the
    query keeps every page full and the cursor from pointing at a hidden tool.
    """
    after = decode_cursor(cursor) if cursor else None
    sql = f"""
        SELECT {TOOL_COLUMNS} FROM tools t
        WHERE t.status = ANY($1::text[])
          AND ($2::text IS NULL OR t.category = $2)
          AND (cardinality($3::text[]) = 0 OR t.tags @> $3::text[])
          AND ($4::text IS NULL OR t.source = $4)
          AND ($5::text IS NULL OR t.name > $5)
          AND ($7::text[] IS NULL OR t.name LIKE ANY ($7::text[]))
        ORDER BY t.name
        LIMIT $6
    """  # noqa: S608
    rows = await conn.fetch(
        sql, list(statuses), category, list(tags), source, after, limit + 1, None if names is None else list(names)
    )
    tools = [row_to_tool(row) for row in rows[:limit]]
    next_cursor = encode_cursor(tools[-1].name) if len(rows) > limit else None
    return ToolPage(tools=tools, next_cursor=next_cursor)


async def categories(conn: asyncpg.Connection, names: Sequence[str] | None = None) -> Categories:
    """Categories of the active tools matching ``names`` (LIKE patterns; ``None``: all), biggest first.

    Counted over visible tools only: a category (an upstream's name, for synced tools) of tools a
    caller cannot see would reveal that they exist.
    """
    rows = await conn.fetch(
        "SELECT category, count(*) AS n FROM tools WHERE status = 'active' "
        "AND ($1::text[] IS NULL OR name LIKE ANY ($1::text[])) GROUP BY category ORDER BY n DESC, category",
        None if names is None else list(names),
    )
    return Categories(categories=[CategoryCount(name=row["category"], tools=row["n"]) for row in rows])


async def history(conn: asyncpg.Connection, name: str, limit: int = 100) -> list[HistoryEntry]:
    rows = await conn.fetch(
        """SELECT h.operation, h.actor, h.at, h.before, h.after FROM tool_history h
           JOIN tools t ON t.id = h.tool_id WHERE t.name = $1 ORDER BY h.id DESC LIMIT $2""",
        name,
        limit,
    )
    return [
        HistoryEntry(operation=r["operation"], actor=r["actor"], at=r["at"], before=r["before"], after=r["after"])
        for r in rows
    ]


async def stats(
    conn: asyncpg.Connection, *, configured_model: str, search_model: str | None, names: Sequence[str] | None = None
) -> Stats:
    """Catalogue figures; the per-tool counts cover only the tools ``names`` (LIKE patterns) matches,
    for the same reason as ``categories``. Model and server counts name no tool and stay global."""
    visible = None if names is None else list(names)
    by_status = {
        r["status"]: r["n"]
        for r in await conn.fetch(
            "SELECT status, count(*) AS n FROM tools WHERE ($1::text[] IS NULL OR name LIKE ANY ($1::text[])) "
            "GROUP BY status",
            visible,
        )
    }
    by_source = {
        r["source"]: r["n"]
        for r in await conn.fetch(
            "SELECT source, count(*) AS n FROM tools WHERE status <> 'deleted' "
            "AND ($1::text[] IS NULL OR name LIKE ANY ($1::text[])) GROUP BY source",
            visible,
        )
    }
    models = await conn.fetch(
        """SELECT m.model, m.dimension, m.ready_at IS NOT NULL AS ready,
                  (SELECT count(*) FROM tool_embeddings e JOIN tools t ON t.id = e.tool_id
                   WHERE e.model = m.model AND t.status <> 'deleted') AS embedded,
                  (SELECT count(*) FROM tools t LEFT JOIN tool_embeddings e ON e.tool_id = t.id AND e.model = m.model
                   WHERE t.status <> 'deleted' AND e.content_hash IS DISTINCT FROM t.content_hash) AS pending
           FROM embedding_models m ORDER BY m.created_at"""
    )
    n_categories = await conn.fetchval(
        "SELECT count(DISTINCT category) FROM tools WHERE status = 'active' "
        "AND ($1::text[] IS NULL OR name LIKE ANY ($1::text[]))",
        visible,
    )
    servers = await conn.fetchval("SELECT count(*) FROM upstream_servers")
    return Stats(
        total=sum(by_status.values()),
        by_status={status: by_status.get(status, 0) for status in ("active", "deprecated", "deleted")},
        by_source=by_source,
        categories=n_categories,
        search_model=search_model,
        configured_model=configured_model,
        models=[
            ModelState(
                model=m["model"],
                dimension=m["dimension"],
                embedded_tools=m["embedded"],
                ready=m["ready"],
                pending_embeddings=m["pending"],
            )
            for m in models
        ],
        upstream_servers=servers,
    )


async def count_by_status(conn: asyncpg.Connection) -> dict[str, int]:
    rows = await conn.fetch("SELECT status, count(*) AS n FROM tools GROUP BY status")
    counts = {row["status"]: row["n"] for row in rows}
    return {status: counts.get(status, 0) for status in ("active", "deprecated", "deleted")}
