"""The Tree-of-Thoughts server's Litestar app."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext

from litestar import Litestar

from platform_common.db import Database, migrate
from platform_common.health import ReadinessCheck, database_probe, health_controller, tracked_database_check
from platform_common.http import ObservedApp, cors_config, create_app, openapi_config
from platform_common.logs import configure_logging
from platform_common.settings import SettingsError
from tree_of_thoughts import __version__
from tree_of_thoughts.api import api_controllers
from tree_of_thoughts.config import TotSettings
from tree_of_thoughts.issuer import build_issuer, tot_auth
from tree_of_thoughts.mcp_tools import build_mcp
from tree_of_thoughts.runs import build_run_service

MIGRATIONS = "tree_of_thoughts.migrations"
MIGRATIONS_TABLE = "tot_migrations"


def build_app(settings: TotSettings) -> Litestar:
    """Assemble the app; without DATABASE_URL runs are kept in memory and readiness has no database."""
    if settings.workers > 1 and not settings.database_url:
        # Each worker process would keep its own runs: a client would see its run only on some requests.
        raise SettingsError("WORKERS > 1 needs DATABASE_URL (without it runs live in one process's memory)")
    database = (
        Database(settings.database_url, max_size=settings.database_pool_max, timeout=settings.database_timeout_seconds)
        if settings.database_url
        else None
    )
    # Without a database there is no mcp_database_up at all (no probe, no series), rather than a 0.
    checks: dict[str, ReadinessCheck] = {"database": tracked_database_check(database.ping)} if database else {}
    runs = build_run_service(settings, database)
    mcp = build_mcp(settings, runs)
    issuer = build_issuer(settings)
    checks["signing_keys"] = issuer.keys.readiness
    auth = tot_auth(settings, issuer, database)

    @asynccontextmanager
    async def lifespan(_: Litestar) -> AsyncIterator[None]:
        if database:
            await migrate(
                settings.database_url, MIGRATIONS, table=MIGRATIONS_TABLE, wait_seconds=settings.database_wait_seconds
            )
        probe: AbstractAsyncContextManager[None] = database_probe(checks["database"]) if database else nullcontext()
        async with mcp.lifespan(), probe:
            try:
                # Workers record how they ended on the way out, so they stop before the pool closes.
                async with runs.running():
                    yield
            finally:
                if database:
                    await database.close()

    return create_app(
        route_handlers=[
            health_controller(checks),
            mcp.route(authenticate=auth.authenticate_scope),
            *api_controllers(runs),
            *issuer.route_handlers,
            *auth.route_handlers,
        ],
        middleware=auth.middleware,
        lifespan=[issuer.lifespan, lifespan],
        openapi_config=openapi_config(
            "Tree-of-Thoughts server",
            __version__,
            "Deliberate search over thoughts (generate, evaluate, search, backtrack) and the platform's "
            "OAuth token issuer.",
        ),
        cors_config=cors_config(settings.cors_origins),
        request_max_body_size=settings.max_request_bytes,
    )


def factory() -> ObservedApp:
    """Entry point for uvicorn workers: the settings the CLI handed over (flags included)."""
    settings = TotSettings.for_worker()
    configure_logging(settings.log_level, settings.log_format)
    return ObservedApp(build_app(settings))
