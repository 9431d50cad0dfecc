"""``tot``: serve the Tree-of-Thoughts server."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from platform_common.logs import configure_logging
from platform_common.runner import serve
from platform_common.settings import SettingsError

from tree_of_thoughts.config import TotSettings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tot",
        description="Tree-of-Thoughts MCP server and token issuer. Every flag can also be set by the "
        "environment variable shown.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser(
        "serve", help="Serve the REST API, /mcp, the token endpoint and metrics.",
        description="Serve the ToT server. With DATABASE_URL runs live in PostgreSQL; without it, in memory.",
    )
    TotSettings.add_arguments(serve_cmd)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    try:
        settings = TotSettings.from_args(args)
    except SettingsError as exc:
        sys.exit(f"tot: {exc}")
    configure_logging(settings.log_level, settings.log_format)
    if args.command == "serve":
        serve(settings, "tree_of_thoughts.app:factory")
