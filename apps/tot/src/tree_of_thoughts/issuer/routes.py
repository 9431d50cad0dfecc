"""The issuer's HTTP face: ``POST /oauth/token`` (RFC 6749 client credentials), the JWKS and RFC 8414."""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Any
from urllib.parse import unquote

import msgspec
from litestar import Request, Response, get, post
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec

from platform_common.auth import ALL_SCOPES
from tree_of_thoughts.issuer.clients import OAuthClient, authenticate
from tree_of_thoughts.issuer.manager import KeyManager, KeyStoreStale
from tree_of_thoughts.issuer.tokens import TokenIssuer

FORM = "application/x-www-form-urlencoded"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
JWKS_PATH = "/.well-known/jwks.json"
TOKEN_PATH = "/oauth/token"  # noqa: S105 (a path, not a secret)


class PublicJwk(msgspec.Struct):
    """One RSA public key (RFC 7517); private members are never published."""

    kty: str
    kid: str
    alg: str
    use: str
    n: str
    e: str


class JwkSet(msgspec.Struct):
    keys: list[PublicJwk]


class TokenResponse(msgspec.Struct):
    """RFC 6749 §5.1."""

    access_token: str
    token_type: str
    expires_in: int
    scope: str


class OAuthErrorBody(msgspec.Struct, omit_defaults=True):
    """RFC 6749 §5.2."""

    error: str
    error_description: str | None = None


_JSON = "application/json"
TOKEN_RESPONSES = {
    200: ResponseSpec(data_container=TokenResponse, description="The access token", media_type=_JSON),
    400: ResponseSpec(
        data_container=OAuthErrorBody,
        description="invalid_request, unsupported_grant_type, invalid_scope or invalid_target",
        media_type=_JSON,
    ),
    401: ResponseSpec(data_container=OAuthErrorBody, description="invalid_client", media_type=_JSON),
    503: ResponseSpec(
        data_container=OAuthErrorBody,
        description="temporarily_unavailable: this replica cannot read its signing keys",
        media_type=_JSON,
    ),
}
JWKS_RESPONSES = {
    200: ResponseSpec(data_container=JwkSet, description="The published public keys", media_type=_JSON),
    304: ResponseSpec(data_container=None, description="Not modified (If-None-Match matched the ETag)"),
}


class OAuthError(Exception):
    """An RFC 6749 §5.2 error response."""

    def __init__(self, error: str, description: str, status: int = 400, basic: bool = False) -> None:
        super().__init__(description)
        self.error, self.description, self.status, self.basic = error, description, status, basic

    def response(self) -> Response[Any]:
        headers = dict(NO_STORE)
        if self.basic:
            headers["WWW-Authenticate"] = 'Basic realm="mcp-platform"'
        body = {"error": self.error, "error_description": self.description}
        return Response(body, status_code=self.status, headers=headers, media_type="application/json")


def issuer_routes(
    tokens: TokenIssuer, keys: KeyManager, clients: dict[str, OAuthClient], *, jwks_max_age: int
) -> list[HTTPRouteHandler]:
    @post(
        TOKEN_PATH,
        summary="Issue an access token (OAuth 2.0 client credentials)",
        tags=["auth"],
        status_code=200,
        responses=TOKEN_RESPONSES,
    )
    async def token(request: Request[Any, Any, Any]) -> Response[Any]:
        try:
            return await _token(request, tokens, clients)
        except OAuthError as exc:
            return exc.response()
        except KeyStoreStale:
            # The reason (how long, which store) is in /ready and the logs, not for callers.
            return OAuthError("temporarily_unavailable", "Signing keys are unavailable; retry.", 503).response()

    @get(
        JWKS_PATH,
        summary="Public keys that verify issued tokens (JWKS)",
        tags=["auth"],
        cache=False,
        responses=JWKS_RESPONSES,
    )
    async def jwks(request: Request[Any, Any, Any]) -> Response[bytes]:
        body = msgspec.json.encode(keys.jwks())
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {"Cache-Control": f"public, max-age={jwks_max_age}", "ETag": etag}
        if etag in {tag.strip() for tag in request.headers.get("if-none-match", "").split(",")}:
            return Response(b"", status_code=304, headers=headers)
        return Response(body, headers=headers, media_type="application/json")

    @get("/.well-known/oauth-authorization-server", summary="Authorization server metadata (RFC 8414)", tags=["auth"])
    async def metadata() -> dict[str, Any]:
        return {
            "issuer": tokens.issuer,
            "token_endpoint": tokens.issuer + TOKEN_PATH,
            "jwks_uri": tokens.issuer + JWKS_PATH,
            "grant_types_supported": ["client_credentials"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": sorted(ALL_SCOPES),
            "response_types_supported": [],
        }

    return [token, jwks, metadata]


async def _token(
    request: Request[Any, Any, Any], tokens: TokenIssuer, clients: dict[str, OAuthClient]
) -> Response[Any]:
    if request.headers.get("content-type", "").split(";")[0].strip().lower() != FORM:
        raise OAuthError("invalid_request", f"The body must be {FORM}.")
    form = await request.form()
    params: dict[str, str] = {}
    for name in set(form.keys()):
        values = form.getall(name)
        if len(values) != 1 or not isinstance(values[0], str):
            raise OAuthError("invalid_request", f"Parameter {name!r} must appear once.")
        params[name] = values[0]
    client = _client(request, params, clients)
    if params.get("grant_type") != "client_credentials":
        raise OAuthError("unsupported_grant_type", "Only client_credentials is supported.")
    requested = params.get("scope", "").split()
    scopes = set(requested) if requested else set(client.scopes)
    if not scopes <= set(client.scopes):
        raise OAuthError("invalid_scope", "The requested scope exceeds what this client may have.")
    # Each service accepts only its own audience, so a token is good for one service: the one asked
    # for, else the client's first allowed audience, else this server's own (AUTH_AUDIENCE).
    allowed = client.audiences or [tokens.audience]
    audience = params.get("audience") or params.get("resource") or allowed[0]
    if audience not in allowed:
        raise OAuthError("invalid_target", "This client may not request that audience.")
    access_token, lifetime = tokens.issue(client.client_id, scopes, audience=audience)
    body = {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "scope": " ".join(sorted(scopes)),
    }
    return Response(body, headers=NO_STORE, media_type="application/json")


def _client(request: Request[Any, Any, Any], params: dict[str, str], clients: dict[str, OAuthClient]) -> OAuthClient:
    """HTTP Basic (RFC 6749 §2.3.1: form-urlencoded id and secret) or client_id/client_secret fields."""
    authorization = request.headers.get("authorization", "")
    basic = authorization[:6].lower() == "basic "
    if basic:
        if "client_secret" in params:
            raise OAuthError("invalid_request", "Use one client authentication method.")
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise OAuthError("invalid_client", "Malformed Basic credentials.", 401, basic=True) from None
        client_id, sep, secret = decoded.partition(":")
        client_id, secret = unquote(client_id), unquote(secret)
        if not sep:
            raise OAuthError("invalid_client", "Malformed Basic credentials.", 401, basic=True)
    else:
        client_id, secret = params.get("client_id", ""), params.get("client_secret", "")
    client = authenticate(clients, client_id, secret) if client_id and secret else None
    if client is None:
        raise OAuthError("invalid_client", "Client authentication failed.", 401, basic=basic)
    return client
