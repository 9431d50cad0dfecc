"""OAuth clients (``OAUTH_CLIENTS``) and their authentication, in constant time."""

from __future__ import annotations

import hashlib
import hmac

import msgspec

from platform_common.settings import SettingsError

# Compared against when the client_id is unknown, so a miss costs what a hit costs.
_DUMMY_DIGEST = hashlib.sha256(b"no such client").hexdigest()


class OAuthClient(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    client_id: str
    secret_sha256: str
    scopes: list[str]
    # The services this client may get tokens for; the first is the default. Empty: AUTH_AUDIENCE only.
    audiences: list[str] = msgspec.field(default_factory=list)


def parse_clients(text: str) -> dict[str, OAuthClient]:
    """``OAUTH_CLIENTS`` as JSON; the message of a bad value never quotes it (it holds digests)."""
    if not text.strip():
        return {}
    try:
        clients = msgspec.json.decode(text, type=list[OAuthClient])
    except msgspec.DecodeError as exc:
        where = str(exc).rpartition(" - at ")[2] if " - at " in str(exc) else "the document"
        raise SettingsError(f"OAUTH_CLIENTS is not a valid client list (problem at {where})") from None
    for client in clients:
        digest = client.secret_sha256.lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise SettingsError(f"OAUTH_CLIENTS: secret_sha256 of {client.client_id!r} is not a SHA-256 hex digest")
    return {client.client_id: client for client in clients}


def authenticate(clients: dict[str, OAuthClient], client_id: str, secret: str) -> OAuthClient | None:
    """The client whose id and secret both match, else ``None`` (same work either way)."""
    client = clients.get(client_id)
    expected = client.secret_sha256.lower() if client else _DUMMY_DIGEST
    matches = hmac.compare_digest(hashlib.sha256(secret.encode()).hexdigest(), expected)
    return client if client is not None and matches else None
