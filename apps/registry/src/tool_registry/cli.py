"""``tool-registry``: serve the registry, apply migrations, import, search and re-embed the catalogue.

``import``, ``search`` and ``reindex`` work on DATABASE_URL, or (like ``serve``) on the embedded
PostgreSQL under DATA_DIR when it is unset. They print JSON on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import msgspec

from platform_common.embedded_postgres import EmbeddedPostgresError, embedded_postgres_server
from platform_common.logs import configure_logging
from platform_common.problems import ProblemError
from platform_common.runner import serve
from platform_common.settings import SettingsError
from tool_registry.config import RegistrySettings

logger = logging.getLogger("tool_registry")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tool-registry",
        description="MCP Tool Registry. Every flag can also be set by the environment variable shown.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser(
        "serve",
        help="Serve the REST API, /mcp and metrics.",
        description="Serve the registry. Without DATABASE_URL an embedded PostgreSQL with pgvector is "
        "started under DATA_DIR and stopped on exit.",
    )
    RegistrySettings.add_arguments(serve_cmd)
    migrate_cmd = commands.add_parser("migrate", help="Apply database migrations and exit.")
    RegistrySettings.add_arguments(migrate_cmd)
    import_cmd = commands.add_parser(
        "import", help="Create or replace the tools of a JSON array file (all or nothing), then embed them."
    )
    import_cmd.add_argument("file", type=Path, help="JSON array of tools, as POST /api/v1/tools/import takes.")
    RegistrySettings.add_arguments(import_cmd)
    search_cmd = commands.add_parser("search", help="Search the catalogue.")
    search_cmd.add_argument("query")
    search_cmd.add_argument("--limit", type=int, default=10)
    search_cmd.add_argument("--mode", choices=["hybrid", "vector", "text"], default="hybrid")
    RegistrySettings.add_arguments(search_cmd)
    reindex_cmd = commands.add_parser(
        "reindex", help="Re-embed every tool with the configured model (searches keep working meanwhile)."
    )
    RegistrySettings.add_arguments(reindex_cmd)
    return parser


def _serve(settings: RegistrySettings) -> None:
    if settings.database_url:
        serve(settings, "tool_registry.app:factory")
        return
    with embedded_postgres_server(Path(settings.data_dir)) as pg:
        logger.info("no DATABASE_URL: using the embedded PostgreSQL under %s", settings.data_dir)
        # Only the database changes: every flag of the command line still applies.
        serve(msgspec.structs.replace(settings, database_url=pg.url), "tool_registry.app:factory")


def _migrate(settings: RegistrySettings) -> None:
    from platform_common.db import migrate
    from tool_registry.app import MIGRATIONS, MIGRATIONS_TABLE

    if not settings.database_url:
        raise SettingsError("DATABASE_URL: required by migrate")
    applied = asyncio.run(
        migrate(settings.database_url, MIGRATIONS, table=MIGRATIONS_TABLE, wait_seconds=settings.database_wait_seconds)
    )
    logger.info("migrations applied: %s", ", ".join(applied) or "none (up to date)")


async def _catalogue_command(settings: RegistrySettings, args: argparse.Namespace) -> object:
    from platform_common.db import migrate
    from tool_registry.app import MIGRATIONS, MIGRATIONS_TABLE
    from tool_registry.models import SearchRequest, ToolImport
    from tool_registry.policy import EVERYTHING
    from tool_registry.registry import Registry

    await migrate(settings.database_url, MIGRATIONS, table=MIGRATIONS_TABLE)
    registry = Registry.build(settings)
    try:
        await registry.indexer.prepare()
        if args.command == "search":
            request = msgspec.convert({"query": args.query, "limit": args.limit, "mode": args.mode}, SearchRequest)
            return await registry.search(request, EVERYTHING)
        if args.command == "import":
            items = msgspec.json.decode(args.file.read_bytes(), type=list[ToolImport])
            result = await registry.import_tools(items, "cli")
        else:
            # Mark every vector of the model stale; catch_up overwrites them in place.
            async with registry.primary.connection() as conn:
                await conn.execute(
                    "UPDATE tool_embeddings SET content_hash = '' WHERE model = $1", registry.embedder.model
                )
            result = None
        embedded = 0
        while done := await registry.indexer.catch_up():
            embedded += done
        return result or {"embedded": embedded, "model": registry.embedder.model}
    finally:
        await registry.embedder.close()
        await registry.primary.close()


def _run_catalogue_command(settings: RegistrySettings, args: argparse.Namespace) -> None:
    try:
        if settings.database_url:
            output = asyncio.run(_catalogue_command(settings, args))
        else:
            with embedded_postgres_server(Path(settings.data_dir)) as pg:
                output = asyncio.run(_catalogue_command(msgspec.structs.replace(settings, database_url=pg.url), args))
    except (msgspec.ValidationError, msgspec.DecodeError, OSError) as exc:
        sys.exit(f"tool-registry {args.command}: {exc}")
    except ProblemError as exc:
        sys.exit(f"tool-registry {args.command}: {exc.title}: {exc.problem_detail or ''}")
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(output)).decode() + "\n")


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        settings = RegistrySettings.from_args(args)
    except SettingsError as exc:
        sys.exit(f"tool-registry: {exc}")
    configure_logging(settings.log_level, settings.log_format)
    try:
        if args.command == "serve":
            _serve(settings)
        elif args.command == "migrate":
            _migrate(settings)
        else:
            _run_catalogue_command(settings, args)
    except EmbeddedPostgresError as exc:
        sys.exit(f"tool-registry {args.command}: {exc}")
