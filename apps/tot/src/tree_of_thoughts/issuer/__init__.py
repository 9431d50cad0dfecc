"""The platform's OAuth token issuer: client credentials in, RS256 JWTs out, keys rotated in a shared store.

``build_issuer(settings)`` assembles it without I/O; ``Issuer.lifespan`` loads (or creates) the key
ring before the app serves and keeps it fresh in the background.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from litestar.handlers import HTTPRouteHandler

from platform_common.auth import AuthSetup, build_auth
from platform_common.db import Database
from tree_of_thoughts.config import TotSettings
from tree_of_thoughts.issuer.clients import parse_clients
from tree_of_thoughts.issuer.keys import KeyPolicy
from tree_of_thoughts.issuer.manager import KeyManager
from tree_of_thoughts.issuer.routes import issuer_routes
from tree_of_thoughts.issuer.stores import build_store
from tree_of_thoughts.issuer.tokens import TokenIssuer

TOT_SCOPES = ("tot:run", "tot:read")


@dataclass(frozen=True)
class Issuer:
    url: str
    keys: KeyManager
    tokens: TokenIssuer
    route_handlers: list[HTTPRouteHandler]

    @asynccontextmanager
    async def lifespan(self, _: Any = None) -> AsyncIterator[None]:
        async with self.keys.running():
            yield


def issuer_url(settings: TotSettings) -> str:
    return (settings.issuer_url or f"http://{settings.host}:{settings.port}").rstrip("/")


def key_manager(settings: TotSettings, api_client: Any = None) -> KeyManager:
    """The key manager for these settings (refuses timings that would strand valid tokens)."""
    policy = KeyPolicy.from_settings(
        rotation_hours=settings.key_rotation_hours,
        overlap_hours=settings.key_overlap_hours,
        token_hours=settings.jwt_expiration_hours,
        jwks_max_age=settings.jwks_cache_max_age,
        reload_seconds=settings.key_reload_seconds,
    )
    store = build_store(
        settings.key_store, settings.data_dir, settings.key_secret_name, settings.key_secret_namespace, api_client
    )
    return KeyManager(
        store,
        policy,
        reload_seconds=settings.key_reload_seconds,
        max_staleness=settings.key_store_max_staleness_seconds,
    )


def build_issuer(settings: TotSettings, keys: KeyManager | None = None) -> Issuer:
    url = issuer_url(settings)
    keys = keys or key_manager(settings)
    tokens = TokenIssuer(
        keys, issuer=url, audience=settings.auth_audience, ttl_seconds=settings.jwt_expiration_hours * 3600
    )
    routes = issuer_routes(
        tokens, keys, parse_clients(settings.oauth_clients), jwks_max_age=settings.jwks_cache_max_age
    )
    return Issuer(url=url, keys=keys, tokens=tokens, route_handlers=routes)


def tot_auth(settings: TotSettings, issuer: Issuer, database: Database | None = None) -> AuthSetup:
    """Verification for the ToT server: its own keys in-process, unless AUTH_JWKS_URL names another issuer.

    With a ``database`` rate limits are shared by every replica (table ``tot_rate_limits``).
    """
    return build_auth(
        settings,
        scopes_supported=TOT_SCOPES,
        key_source=None if settings.auth_jwks_url else issuer.keys,
        issuer=settings.auth_issuer or issuer.url,
        public_url=settings.issuer_url,
        database=database,
        rate_limit_table="tot_rate_limits",
    )


__all__ = ["TOT_SCOPES", "Issuer", "KeyManager", "build_issuer", "issuer_url", "key_manager", "tot_auth"]
