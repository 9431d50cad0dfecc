"""``tool-registry``: serve the registry, or apply its database migrations."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from platform_common.embedded_postgres import embedded_postgres_server
from platform_common.logs import configure_logging
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
    return parser


def _serve(settings: RegistrySettings) -> None:
    if settings.database_url:
        serve(settings, "tool_registry.app:factory")
        return
    with embedded_postgres_server(Path(settings.data_dir)) as pg:
        logger.info("no DATABASE_URL: using the embedded PostgreSQL under %s", settings.data_dir)
        serve(RegistrySettings.from_env(database_url=pg.url), "tool_registry.app:factory")


def _migrate(settings: RegistrySettings) -> None:
    from platform_common.db import migrate
    from tool_registry.app import MIGRATIONS, MIGRATIONS_TABLE

    if not settings.database_url:
        raise SettingsError("DATABASE_URL: required by migrate")
    applied = asyncio.run(migrate(settings.database_url, MIGRATIONS, table=MIGRATIONS_TABLE))
    logger.info("migrations applied: %s", ", ".join(applied) or "none (up to date)")


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        settings = RegistrySettings.from_args(args)
    except SettingsError as exc:
        sys.exit(f"tool-registry: {exc}")
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "serve":
        _serve(settings)
    elif args.command == "migrate":
        _migrate(settings)
