"""Registry fixtures: a running registry (AUTH_MODE=none) on the test session's PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from platform_common.http import ObservedApp
from tests.servers import running_server
from tool_registry.app import build_app
from tool_registry.config import RegistrySettings


def settings_for(database_url: str, **overrides: Any) -> RegistrySettings:
    # Upstreams in tests listen on 127.0.0.1 at ephemeral ports: both allowed explicitly.
    values: dict[str, Any] = {
        "auth_mode": "none",
        "metrics_port": 0,
        "upstream_allowed_hosts": ["127.0.0.1"],
        "upstream_allowed_ports": ["1024-65535"],
    }
    return RegistrySettings.from_env({}, database_url=database_url, **{**values, **overrides})


@pytest.fixture
def registry_url(database_url: str) -> Iterator[str]:
    with running_server(ObservedApp(build_app(settings_for(database_url)))) as url:
        yield url


def tool(name: str, description: str = "Does a thing.", **fields: Any) -> dict[str, Any]:
    """A minimal valid tool body."""
    return {
        "name": name,
        "description": description,
        "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
        **fields,
    }
