"""A ToT server configuration with real OAuth clients, for tests that act as several callers."""

from __future__ import annotations

import hashlib
import json
import tempfile

from tests.servers import free_port
from tree_of_thoughts.config import TotSettings


def settings_with_clients(scopes: dict[str, list[str]]) -> TotSettings:
    """Auth on, one OAuth client per name (secret ``<name>-secret``), served on a fixed free port."""
    clients = [
        {"client_id": name, "secret_sha256": hashlib.sha256(f"{name}-secret".encode()).hexdigest(), "scopes": granted}
        for name, granted in scopes.items()
    ]
    port = free_port()
    return TotSettings.from_env(
        {},
        auth_mode="jwt",
        oauth_clients=json.dumps(clients),
        port=port,
        issuer_url=f"http://127.0.0.1:{port}",
        metrics_port=0,
        rate_limit_per_minute=0,
        data_dir=tempfile.mkdtemp(),
    )
