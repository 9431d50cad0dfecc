"""Pinned upstream tools: the repository of versions waiting for review, and approving them.

What an upstream declares (description, schemas, annotations) goes to agents as instructions, so
a hostile or compromised upstream can poison it, or change a tool after it was trusted (a "rug
pull"). Each declared version is identified by a digest over its canonical JSON; the catalogue
serves only the version whose digest was approved (``tools.approved_digest``), and sync parks
any other in ``upstream_pending`` until an admin approves that exact digest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection

import asyncpg
import msgspec

from platform_common.problems import ProblemError
from tool_registry import catalogue
from tool_registry.models import PendingTool, Tool, ToolIn


def tool_digest(item: ToolIn) -> str:
    """``sha256:<hex>`` over the sorted-key JSON of the fields an upstream declares.

    Curated fields (category, tags, examples, version) are the registry's own and do not count.
    """
    declared = {
        "title": item.title,
        "description": item.description,
        "input_schema": item.input_schema,
        "output_schema": item.output_schema,
        "annotations": msgspec.to_builtins(item.annotations) if item.annotations else None,
    }
    canonical = json.dumps(declared, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


async def hold(conn: asyncpg.Connection, server: str, upstream_name: str, item: ToolIn, digest: str) -> None:
    """Park this version for review; a different version replaces the parked one (and its age)."""
    await conn.execute(
        """INSERT INTO upstream_pending (server, upstream_name, tool_name, digest, definition)
           VALUES ($1, $2, $3, $4, $5)
           ON CONFLICT (server, upstream_name) DO UPDATE SET
               tool_name = excluded.tool_name, digest = excluded.digest, definition = excluded.definition,
               last_seen_at = now(),
               first_seen_at = CASE WHEN upstream_pending.digest = excluded.digest
                                    THEN upstream_pending.first_seen_at ELSE now() END""",
        server,
        upstream_name,
        item.name,
        digest,
        msgspec.to_builtins(item),
    )


async def discard(conn: asyncpg.Connection, server: str, upstream_name: str) -> None:
    """The upstream declares the approved version again (or is trusted): nothing waits any more."""
    await conn.execute("DELETE FROM upstream_pending WHERE server = $1 AND upstream_name = $2", server, upstream_name)


async def forget_vanished(conn: asyncpg.Connection, server: str, listed: Collection[str]) -> None:
    """Drop parked versions of tools the upstream no longer lists (by catalogue name)."""
    await conn.execute(
        "DELETE FROM upstream_pending WHERE server = $1 AND NOT (tool_name = ANY($2::text[]))", server, list(listed)
    )


async def is_pending(conn: asyncpg.Connection, server: str, upstream_name: str) -> bool:
    found: bool = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM upstream_pending WHERE server = $1 AND upstream_name = $2)",
        server,
        upstream_name,
    )
    return found


async def record_digest(conn: asyncpg.Connection, name: str, digest: str) -> None:
    await conn.execute("UPDATE tools SET approved_digest = $2 WHERE name = $1", name, digest)


async def write_approved(
    conn: asyncpg.Connection,
    server: str,
    item: ToolIn,
    stored: Tool | None,
    upstream_name: str,
    digest: str,
    *,
    actor: str,
    operation: str,
) -> tuple[int, Tool]:
    """Serve ``item`` (version ``digest``) as the catalogue's tool, keeping what curators added."""
    if stored is None:
        tool_id, tool = await catalogue.create(
            conn, item, actor=actor, source=server, upstream_name=upstream_name, operation=operation
        )
    else:
        item = msgspec.structs.replace(
            item, examples=stored.examples, tags=stored.tags, category=stored.category, version=stored.version
        )
        tool_id, tool = await catalogue.replace(conn, item.name, item, actor=actor, operation=operation)
    await record_digest(conn, item.name, digest)
    _, tool = await catalogue.get_with_id(conn, item.name)
    return tool_id, tool


async def pending(conn: asyncpg.Connection, server: str) -> list[PendingTool]:
    """The server's versions waiting for review, with the digest each would replace."""
    rows = await conn.fetch(
        """SELECT p.*, t.approved_digest FROM upstream_pending p LEFT JOIN tools t ON t.name = p.tool_name
           WHERE p.server = $1 ORDER BY p.upstream_name""",
        server,
    )
    return [
        PendingTool(
            server=r["server"],
            upstream_name=r["upstream_name"],
            tool=r["tool_name"],
            change="changed" if r["approved_digest"] else "new",
            digest=r["digest"],
            approved_digest=r["approved_digest"],
            definition=msgspec.convert(r["definition"], ToolIn),
            first_seen_at=r["first_seen_at"],
            last_seen_at=r["last_seen_at"],
        )
        for r in rows
    ]


async def approve(
    conn: asyncpg.Connection, server: str, upstream_name: str, digest: str, *, actor: str
) -> tuple[int, Tool]:
    """Serve the parked version if it is still ``digest`` (what the admin reviewed); else 404/409."""
    row = await conn.fetchrow(
        "SELECT digest, definition FROM upstream_pending WHERE server = $1 AND upstream_name = $2 FOR UPDATE",
        server,
        upstream_name,
    )
    if row is None:
        raise ProblemError(
            404, "Nothing to approve", detail=f"No version of '{upstream_name}' from '{server}' is waiting for review."
        )
    if row["digest"] != digest:
        raise ProblemError(
            409,
            "Pending version changed",
            detail=f"The version waiting for review is {row['digest']}, not {digest}: review it, then approve it.",
        )
    item = msgspec.convert(row["definition"], ToolIn)
    stored = await catalogue.get(conn, item.name)
    await discard(conn, server, upstream_name)
    return await write_approved(conn, server, item, stored, upstream_name, digest, actor=actor, operation="approve")
