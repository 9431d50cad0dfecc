"""The Tool Registry's Litestar app: health, OpenAPI, metrics and MCP around the catalogue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.di import Provide

from platform_common.auth import REGISTRY_SCOPES, build_auth
from platform_common.db import migrate
from platform_common.health import database_probe, health_controller, tracked_database_check
from platform_common.http import ObservedApp, cors_config, create_app, openapi_config
from platform_common.logs import configure_logging
from tool_registry import __version__
from tool_registry.api import CONTROLLERS
from tool_registry.config import RegistrySettings
from tool_registry.egress import Resolver
from tool_registry.mcp_tools import build_mcp
from tool_registry.registry import Registry

MIGRATIONS = "tool_registry.migrations"
MIGRATIONS_TABLE = "registry_migrations"
RATE_LIMITS_TABLE = "registry_rate_limits"  # created by migration 0002


def build_app(settings: RegistrySettings, *, resolver: Resolver | None = None) -> Litestar:
    """Assemble the app for ``settings``; tests call this directly (``resolver``: their DNS for
    upstream hosts), the CLI through ``factory``."""
    if not settings.database_url:
        raise ValueError("DATABASE_URL is required (tool-registry serve starts an embedded one without it)")
    registry = Registry.build(settings, resolver=resolver)
    database_check = tracked_database_check(registry.primary.ping)
    mcp = build_mcp(registry)
    auth = build_auth(
        settings,
        scopes_supported=REGISTRY_SCOPES,
        api_keys=settings.api_keys,
        api_key_scopes=REGISTRY_SCOPES,
        public_url=settings.public_url,
        database=registry.primary,
        rate_limit_table=RATE_LIMITS_TABLE,
        groups_claim=settings.auth_groups_claim,
    )

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        await migrate(
            settings.database_url, MIGRATIONS, table=MIGRATIONS_TABLE, wait_seconds=settings.database_wait_seconds
        )
        async with registry.running(), mcp.lifespan(), database_probe(database_check):
            yield

    return create_app(
        route_handlers=[
            health_controller({"database": database_check}),
            mcp.route(authenticate=auth.authenticate_scope),
            *auth.route_handlers,
            *CONTROLLERS,
        ],
        middleware=auth.middleware,
        dependencies={"registry": Provide(lambda: registry, sync_to_thread=False)},
        lifespan=[lifespan],
        openapi_config=openapi_config(
            "Tool Registry",
            __version__,
            "Semantic discovery of tools over MCP and REST, and a gateway to upstream MCP servers.",
        ),
        cors_config=cors_config(settings.cors_origins),
        request_max_body_size=settings.max_request_bytes,
    )


def factory() -> ObservedApp:
    """Entry point for uvicorn workers: the settings the CLI handed over (flags included)."""
    settings = RegistrySettings.for_worker()
    configure_logging(settings.log_level, settings.log_format)
    return ObservedApp(build_app(settings))
