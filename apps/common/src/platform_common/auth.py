"""Who is calling, and what they may do.

Every request gets a ``Principal``: from a verified bearer JWT (``AUTH_MODE=jwt``), from a static
bootstrap API key, or, with ``AUTH_MODE=none`` (local runs only), an anonymous principal holding
every scope. REST handlers receive it as the ``principal`` dependency and guard routes with
``require_scopes``; MCP tools get it as ``ToolContext.principal`` and call ``principal.require``.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from platform_common.problems import ProblemError

# Every scope the platform knows; AUTH_MODE=none grants them all.
ALL_SCOPES = frozenset({"tot:run", "tot:read", "registry:read", "registry:write", "registry:call"})


class InsufficientScope(ProblemError):
    """403: the caller is known but lacks a scope the operation needs."""

    def __init__(self, scope: str) -> None:
        super().__init__(
            403, "Insufficient scope", detail=f"This operation needs the '{scope}' scope.",
            headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'},
        )
        self.scope = scope


class Principal(msgspec.Struct, frozen=True):
    """The authenticated caller: ``subject`` owns what it creates (e.g. ToT runs)."""

    subject: str
    scopes: frozenset[str]
    kind: Literal["jwt", "api_key", "anonymous"] = "jwt"

    def has(self, scope: str) -> bool:
        return scope in self.scopes

    def require(self, scope: str) -> None:
        """Raise ``InsufficientScope`` (403 in REST, an error result in MCP) unless granted."""
        if scope not in self.scopes:
            raise InsufficientScope(scope)


ANONYMOUS = Principal(subject="anonymous", scopes=ALL_SCOPES, kind="anonymous")


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The principal the auth layer attached to this request (anonymous when auth is off)."""
    principal = connection.scope.get("state", {}).get("principal")
    return principal if isinstance(principal, Principal) else ANONYMOUS


def require_scopes(*scopes: str) -> Any:
    """A Litestar guard: ``@get(..., guards=[require_scopes("registry:read")])``."""

    def guard(connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler) -> None:
        principal = principal_of(connection)
        for scope in scopes:
            principal.require(scope)

    return guard
