"""Who is calling, and what they may do.

Every request gets a ``Principal``: from a verified bearer JWT (``AUTH_MODE=jwt``), from a static
bootstrap API key, or, with ``AUTH_MODE=none`` (local runs only), an anonymous principal holding
every scope. REST handlers receive it as the ``principal`` dependency and guard routes with
``require_scopes``; MCP tools get it as ``ToolContext.principal`` and call ``principal.require``.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
from litestar import Request, get
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.handlers import HTTPRouteHandler
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from platform_common.db import Database
from platform_common.jwt import InvalidToken, JwksCache, JwtVerifier, KeySource
from platform_common.problems import ProblemError
from platform_common.ratelimit import Limiter, build_limiter
from platform_common.settings import BaseSettings, SettingsError
from platform_common.sharedlimit import SharedRateLimiter

# Every scope the platform knows; AUTH_MODE=none grants them all.
ALL_SCOPES = frozenset({"tot:run", "tot:read", "registry:read", "registry:write", "registry:call", "registry:audit"})
# What the registry's bootstrap API keys (API_KEYS) grant: full control of the registry, nothing on ToT.
REGISTRY_SCOPES = frozenset({"registry:read", "registry:write", "registry:call", "registry:audit"})


class InsufficientScope(ProblemError):
    """403: the caller is known but lacks a scope the operation needs."""

    def __init__(self, scope: str) -> None:
        super().__init__(
            403,
            "Insufficient scope",
            detail=f"This operation needs the '{scope}' scope.",
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
        )
        self.scope = scope


class Principal(msgspec.Struct, frozen=True):
    """The authenticated caller: ``subject`` owns what it creates (e.g. ToT runs); ``groups`` come
    from the token's groups claim and let the registry's tool policy grant rights per team."""

    subject: str
    scopes: frozenset[str]
    kind: Literal["jwt", "api_key", "anonymous"] = "jwt"
    groups: frozenset[str] = frozenset()

    def has(self, scope: str) -> bool:
        return scope in self.scopes

    def require(self, scope: str) -> None:
        """Raise ``InsufficientScope`` (403 in REST, an error result in MCP) unless granted."""
        if scope not in self.scopes:
            raise InsufficientScope(scope)


ANONYMOUS = Principal(subject="anonymous", scopes=ALL_SCOPES, kind="anonymous")


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The principal the auth layer attached to this request; 401 when there is none.

    Fail closed: a route that forgot to sit behind the middleware (or a public path that reached a
    guarded handler) gets no rights at all. ``AUTH_MODE=none`` attaches ``ANONYMOUS`` explicitly.
    """
    principal = connection.scope.get("state", {}).get("principal")
    if not isinstance(principal, Principal):
        raise Unauthorized("A bearer token is required.", resource_metadata=None, token_given=False)
    return principal


def require_scopes(*scopes: str) -> Any:
    """A Litestar guard: ``@get(..., guards=[require_scopes("registry:read")])``."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = principal_of(connection)
        for scope in scopes:
            principal.require(scope)

    return guard


# --- Authentication: bearer JWTs, bootstrap API keys, and the ASGI layer in front of every route ---

REALM = "mcp-platform"
RESOURCE_METADATA_PATH = "/.well-known/oauth-protected-resource"
# Paths anyone may call: probes, API docs, discovery documents and the token endpoint itself.
PUBLIC_PATHS = frozenset({"/health", "/ready", "/schema", "/oauth/token"})
PUBLIC_PREFIXES = ("/schema/", "/.well-known/")
# Probes are also exempt from rate limits: kubelet must never be told to back off.
UNLIMITED_PATHS = frozenset({"/health", "/ready"})
_MAX_API_KEY_CHARS = 512
_HOST = re.compile(r"[A-Za-z0-9.\-]+(:\d{1,5})?|\[[0-9A-Fa-f:.]+\](:\d{1,5})?")

logger = logging.getLogger(__name__)


class Unauthorized(ProblemError):
    """401 with an RFC 6750/9728 challenge; ``detail`` is a fixed reason, never the credential."""

    def __init__(self, detail: str, *, resource_metadata: str | None, token_given: bool) -> None:
        challenge = f'Bearer realm="{REALM}"'
        if resource_metadata:
            challenge += f', resource_metadata="{resource_metadata}"'
        if token_given:
            challenge += ', error="invalid_token"'
        super().__init__(401, "Unauthorized", detail=detail, headers={"WWW-Authenticate": challenge})


def is_public_path(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def hash_api_key(key: str) -> str:
    """The form API_KEYS holds: SHA-256 hex of the key (``tool-registry`` docs show how to make one)."""
    return hashlib.sha256(key.encode()).hexdigest()


def principal_from_claims(claims: Mapping[str, Any], groups_claim: str = "groups") -> Principal:
    """``sub`` → subject, space-separated ``scope`` → scopes, the ``groups_claim`` → groups.

    ``groups_claim`` is a dotted path (``realm_access.roles`` for Keycloak) to a list of strings or
    a space-separated string; anything else there means no groups, never an error: a token without
    groups simply matches no group rule.
    """
    scope = claims.get("scope")
    value: Any = claims
    for part in groups_claim.split(".") if groups_claim else ():
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, str):
        value = value.split()
    groups = frozenset(g for g in value if isinstance(g, str)) if isinstance(value, list) else frozenset()
    return Principal(
        subject=claims["sub"], scopes=frozenset(scope.split() if isinstance(scope, str) else ()), groups=groups
    )


class Authenticator:
    """Turns a request's credentials into a ``Principal`` or raises ``Unauthorized``.

    ``Authorization: Bearer <jwt>`` is verified by ``verifier``; a bearer value that is not
    JWT-shaped, or an ``X-API-Key`` header, is checked against ``api_key_digests`` (SHA-256 hex)
    with a constant-time comparison against every configured digest.
    """

    def __init__(
        self,
        *,
        mode: str,
        verifier: JwtVerifier | None = None,
        api_key_digests: Sequence[str] = (),
        api_key_scopes: frozenset[str] = frozenset(),
        public_url: str = "",
        groups_claim: str = "groups",
    ) -> None:
        self.mode = mode
        self.groups_claim = groups_claim
        self.verifier = verifier
        self.api_key_digests = [digest.strip().lower() for digest in api_key_digests if digest.strip()]
        self.api_key_scopes = api_key_scopes
        self.public_url = public_url.rstrip("/")

    async def authenticate(self, scope: Scope) -> Principal:
        """The caller of this HTTP request; ``ANONYMOUS`` when ``AUTH_MODE=none``."""
        if self.mode == "none":
            return ANONYMOUS
        headers = _headers(scope)
        authorization = headers.get("authorization", "")
        api_key = headers.get("x-api-key")
        scheme, _, credential = authorization.partition(" ")
        credential = credential.strip()
        if authorization and (scheme.lower() != "bearer" or not credential):
            raise self._unauthorized(scope, "Use the Bearer scheme.", token_given=True)
        if credential and credential.count(".") == 2:
            return await self._from_jwt(scope, credential)
        if credential or api_key is not None:
            return self._from_api_key(scope, credential or api_key or "")
        raise self._unauthorized(scope, "A bearer token is required.", token_given=False)

    async def authenticate_scope(self, scope: Scope) -> Principal:
        """For ``McpApp.route(authenticate=...)``: reuse the middleware's principal, else authenticate."""
        principal = scope.get("state", {}).get("principal")
        return principal if isinstance(principal, Principal) else await self.authenticate(scope)

    def resource_metadata_url(self, scope: Scope) -> str | None:
        base = self.public_url or _request_base(scope)
        return f"{base}{RESOURCE_METADATA_PATH}" if base else None

    async def _from_jwt(self, scope: Scope, token: str) -> Principal:
        if self.verifier is None:
            raise self._unauthorized(scope, "Bearer tokens are not accepted here.", token_given=True)
        try:
            claims = await self.verifier.verify(token)
        except InvalidToken as exc:
            logger.info("rejected bearer token: %s", exc)
            raise self._unauthorized(scope, "The bearer token is invalid.", token_given=True) from None
        return principal_from_claims(claims, self.groups_claim)

    def _from_api_key(self, scope: Scope, key: str) -> Principal:
        digest = hash_api_key(key[:_MAX_API_KEY_CHARS])
        match = None
        for configured in self.api_key_digests:
            # Compare with every digest, without an early exit: timing says nothing about which.
            if hmac.compare_digest(digest, configured):
                match = configured
        if match is None or len(key) > _MAX_API_KEY_CHARS:
            logger.info("rejected API key")
            raise self._unauthorized(scope, "The credential is invalid.", token_given=True)
        # The digest's prefix names the key in logs and audit trails without revealing it.
        return Principal(subject=f"api-key:{match[:12]}", scopes=self.api_key_scopes, kind="api_key")

    def _unauthorized(self, scope: Scope, detail: str, *, token_given: bool) -> Unauthorized:
        return Unauthorized(detail, resource_metadata=self.resource_metadata_url(scope), token_given=token_given)


class AuthMiddleware(ASGIMiddleware):
    """Authenticate every request outside the public paths and apply the rate limit.

    Order matters: a request that fails authentication is counted against its client IP before
    the 401, so guessing credentials is throttled too; an authenticated request is counted
    against its principal (a NAT of many agents is not one caller); probes are never limited.
    """

    scopes = (ScopeType.HTTP,)

    def __init__(self, authenticator: Authenticator, limiter: Limiter | None) -> None:
        self.authenticator = authenticator
        self.limiter = limiter

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        path = scope["path"]
        if path in UNLIMITED_PATHS:
            await next_app(scope, receive, send)
            return
        client_key = f"ip:{_client_ip(scope)}"
        if is_public_path(path):
            await self._limit(client_key)
            await next_app(scope, receive, send)
            return
        try:
            principal = await self.authenticator.authenticate(scope)
        except Unauthorized:
            await self._limit(client_key)
            raise
        await self._limit(client_key if principal.kind == "anonymous" else f"sub:{principal.subject}")
        scope.setdefault("state", {})["principal"] = principal
        await next_app(scope, receive, send)

    async def _limit(self, key: str) -> None:
        if self.limiter is not None:
            await self.limiter.enforce(key)


class ResourceMetadata(msgspec.Struct):
    """RFC 9728 protected resource metadata."""

    resource: str
    authorization_servers: list[str]
    scopes_supported: list[str]
    bearer_methods_supported: list[str]


def resource_metadata_route(
    authenticator: Authenticator, authorization_servers: Sequence[str], scopes: Iterable[str]
) -> HTTPRouteHandler:
    """``GET /.well-known/oauth-protected-resource``: where clients learn which issuer to ask."""

    @get(RESOURCE_METADATA_PATH, summary="OAuth protected resource metadata (RFC 9728)", tags=["auth"])
    async def protected_resource(request: Request[Any, Any, Any]) -> ResourceMetadata:
        return ResourceMetadata(
            resource=authenticator.public_url or _request_base(request.scope) or str(request.base_url).rstrip("/"),
            authorization_servers=[server for server in authorization_servers if server],
            scopes_supported=sorted(scopes),
            bearer_methods_supported=["header"],
        )

    return protected_resource


@dataclass(frozen=True)
class AuthSetup:
    """What an app wires in: the middleware, the MCP hook and the discovery route."""

    authenticator: Authenticator
    middleware: list[ASGIMiddleware]
    route_handlers: list[HTTPRouteHandler]

    async def authenticate_scope(self, scope: Scope) -> Principal:
        return await self.authenticator.authenticate_scope(scope)


def build_auth(
    settings: BaseSettings,
    *,
    scopes_supported: Iterable[str],
    key_source: KeySource | None = None,
    issuer: str = "",
    api_keys: Sequence[str] = (),
    api_key_scopes: frozenset[str] = frozenset(),
    public_url: str = "",
    database: Database | None = None,
    rate_limit_table: str = "",
    groups_claim: str = "groups",
) -> AuthSetup:
    """Authentication and rate limiting for one app, from its settings.

    With a ``database`` the rate limits are shared by every process through ``rate_limit_table``
    (created by the app's migrations); without one each process limits on its own. JWTs are
    verified with ``key_source`` when given (the issuer verifies in-process) or else with the JWKS
    at ``AUTH_JWKS_URL``; ``issuer`` overrides ``AUTH_ISSUER``; ``groups_claim`` names the token
    claim read into ``Principal.groups``. Refuses to build a ``jwt``-mode
    app that could accept no credential at all.
    """
    issuer = issuer or settings.auth_issuer
    if key_source is None and settings.auth_jwks_url:
        # Cached no longer than AUTH_JWKS_MAX_AGE_SECONDS whatever the issuer's max-age: that bounds
        # how long a revoked key still verifies here.
        max_age = settings.auth_jwks_max_age_seconds
        key_source = JwksCache(settings.auth_jwks_url, min_age=min(60, max_age), max_age=max_age)
    verifier = None
    if settings.auth_mode == "jwt":
        if key_source is None and not api_keys:
            raise SettingsError("AUTH_MODE=jwt needs AUTH_JWKS_URL (or API_KEYS); use AUTH_MODE=none for local runs")
        if key_source is not None:
            if not issuer:
                raise SettingsError("AUTH_ISSUER is required to verify tokens (the issuer's ISSUER_URL)")
            verifier = JwtVerifier(key_source, issuer=issuer, audience=settings.auth_audience)
    else:
        logger.warning("AUTH_MODE=none: authentication is OFF, every caller holds every scope (local runs only)")
    authenticator = Authenticator(
        mode=settings.auth_mode,
        verifier=verifier,
        api_key_digests=api_keys,
        api_key_scopes=api_key_scopes,
        public_url=public_url,
        groups_claim=groups_claim,
    )
    for digest in authenticator.api_key_digests:
        if not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise SettingsError("API_KEYS must be SHA-256 hex digests of the keys, not the keys themselves")
    return AuthSetup(
        authenticator=authenticator,
        middleware=[AuthMiddleware(authenticator, _limiter(settings, database, rate_limit_table))],
        route_handlers=[resource_metadata_route(authenticator, [issuer], scopes_supported)],
    )


def _limiter(settings: BaseSettings, database: Database | None, table: str) -> Limiter | None:
    if database is None or settings.rate_limit_per_minute == 0:
        return build_limiter(settings.rate_limit_per_minute)
    return SharedRateLimiter(settings.rate_limit_per_minute, database, table)


def _headers(scope: Scope) -> dict[str, str]:
    return {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope.get("headers", ())}


def _client_ip(scope: Scope) -> str:
    # uvicorn rewrites scope["client"] from X-Forwarded-For when the peer is in FORWARDED_ALLOW_IPS.
    client = scope.get("client")
    return client[0] if client else "unknown"


def _request_base(scope: Scope) -> str | None:
    """``scheme://host`` of this request, when the Host header is a plain host name (no injection)."""
    host = _headers(scope).get("host", "")
    if not _HOST.fullmatch(host):
        return None
    scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
    return f"{scheme}://{host}"
