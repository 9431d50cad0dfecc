"""Settings from environment variables and command-line flags, declared once as msgspec Structs.

Each field is one setting: its upper-cased name is the environment variable, its kebab-cased name
the flag, and its ``Meta(description=...)`` the ``--help`` text. Flags override the environment.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import tempfile
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import msgspec

S = TypeVar("S", bound="BaseSettings")

# Names the private file through which the runner hands the effective settings to its workers.
HANDOFF_ENV = "MCP_SETTINGS_FILE"


def with_password(url: str, password: str) -> str:
    """``url`` with its password replaced by ``password`` (percent-encoded, so any character is safe)."""
    parts = urlsplit(url)
    if not parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{quote(password, safe='')}@{hostport}"))


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


class BaseSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Settings both apps share; each app subclasses it with its own fields."""

    host: Annotated[str, msgspec.Meta(description="Interface the API listens on.")] = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=1, le=65535, description="API port.")] = 8000
    metrics_port: Annotated[int, msgspec.Meta(ge=0, le=65535, description="Prometheus metrics port (0 disables).")] = (
        8080
    )
    workers: Annotated[int, msgspec.Meta(ge=1, le=64, description="Worker processes.")] = 1
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], msgspec.Meta(description="Log level.")] = "INFO"
    log_format: Annotated[Literal["json", "text"], msgspec.Meta(description="json for machines, text for people.")] = (
        "json"
    )
    data_dir: Annotated[str, msgspec.Meta(description="Directory for local state (embedded database, key files).")] = (
        "./.data"
    )
    database_url: Annotated[
        str, msgspec.Meta(description="PostgreSQL URL (secret). Empty: see each app's default.")
    ] = ""
    database_pool_max: Annotated[int, msgspec.Meta(ge=1, le=200, description="Connections per worker process.")] = 10
    database_password: Annotated[
        str,
        msgspec.Meta(
            description="Password for DATABASE_URL (and DATABASE_READ_URL), replacing any in the URLs (secret); "
            "lets the URL be built without it (a Secret managed elsewhere holds only the password)."
        ),
    ] = ""
    database_wait_seconds: Annotated[
        float,
        msgspec.Meta(
            ge=0,
            le=3600,
            description="At start-up (migrations), how long to retry an unreachable database, with backoff.",
        ),
    ] = 60.0
    database_timeout_seconds: Annotated[
        float, msgspec.Meta(gt=0, le=120, description="Timeout for acquiring a connection and for one query.")
    ] = 5.0
    auth_mode: Annotated[
        Literal["jwt", "none"],
        msgspec.Meta(description="jwt verifies bearer tokens; none disables auth (local runs only)."),
    ] = "jwt"
    auth_none_allow_non_loopback: Annotated[
        bool,
        msgspec.Meta(description="Let AUTH_MODE=none listen on a non-loopback HOST (anyone who reaches it is admin)."),
    ] = False
    auth_jwks_url: Annotated[str, msgspec.Meta(description="JWKS URL of the token issuer.")] = ""
    auth_jwks_max_age_seconds: Annotated[
        int,
        msgspec.Meta(
            ge=1,
            le=86400,
            description="Longest time a fetched JWKS is trusted, whatever its max-age: bounds how long a "
            "revoked key still verifies.",
        ),
    ] = 300
    auth_issuer: Annotated[str, msgspec.Meta(description="Expected token issuer (iss).")] = ""
    auth_audience: Annotated[
        str, msgspec.Meta(description="Expected token audience (aud); each app defaults to its own name.")
    ] = "mcp-platform"
    cors_origins: Annotated[
        list[str], msgspec.Meta(description="Comma-separated origins allowed by CORS (empty: none).")
    ] = msgspec.field(default_factory=list)
    rate_limit_per_minute: Annotated[
        int, msgspec.Meta(ge=0, description="Requests per minute per principal and per IP (0: off).")
    ] = 100
    max_request_bytes: Annotated[int, msgspec.Meta(ge=1024, description="Largest request body accepted.")] = 1_048_576
    mcp_allowed_hosts: Annotated[
        list[str],
        msgspec.Meta(description="Comma-separated Host header values /mcp accepts (DNS-rebinding guard)."),
    ] = msgspec.field(default_factory=list)
    forwarded_allow_ips: Annotated[
        list[str],
        msgspec.Meta(
            description="Comma-separated proxy addresses and CIDRs whose X-Forwarded-For/-Proto are trusted (* = any)."
        ),
    ] = msgspec.field(default_factory=lambda: ["127.0.0.1"])

    def __post_init__(self) -> None:
        for entry in self.forwarded_allow_ips:
            if not is_trusted_proxy_entry(entry):
                raise SettingsError(f"FORWARDED_ALLOW_IPS: {entry!r} is not an IP address, a CIDR or *")
        if self.auth_mode == "none" and not is_loopback(self.host) and not self.auth_none_allow_non_loopback:
            # Without authentication every caller holds every scope: only this machine may call.
            raise SettingsError(
                f"AUTH_MODE=none refuses HOST={self.host!r} (not loopback): anyone who can reach it would hold "
                "every scope. Use AUTH_MODE=jwt, HOST=127.0.0.1, or set AUTH_NONE_ALLOW_NON_LOOPBACK=true"
            )

    @classmethod
    def from_env(cls: type[S], environ: Mapping[str, str] | None = None, **overrides: Any) -> S:
        """Build settings from ``environ`` (default ``os.environ``); ``overrides`` win."""
        environ = os.environ if environ is None else environ
        raw: dict[str, Any] = {}
        for name in cls.__struct_fields__:
            value = environ.get(name.upper())
            if value is not None:
                raw[name] = _csv(value) if _is_list(cls, name) else value
        raw.update({k: v for k, v in overrides.items() if v is not None})
        if password := raw.get("database_password"):
            for key in ("database_url", "database_read_url"):
                if raw.get(key):
                    raw[key] = with_password(raw[key], password)
        try:
            return msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as exc:
            raise SettingsError(f"invalid configuration: {_env_message(str(exc))}") from exc

    @classmethod
    def for_worker(cls: type[S]) -> S:
        """The settings a worker process serves with: the runner's handoff file, else the environment.

        Workers are separate processes; the file carries what the command line said (flags win)
        without copying any setting, secrets included, into the environment.
        """
        path = os.environ.get(HANDOFF_ENV)
        if not path:
            return cls.from_env()
        try:
            return msgspec.json.decode(Path(path).read_bytes(), type=cls)
        except msgspec.ValidationError as exc:
            raise SettingsError(f"invalid configuration: {_env_message(str(exc))}") from exc

    def write_handoff(self) -> Path:
        """Write these settings to a new private file (0600 in a 0700 directory) and name it in HANDOFF_ENV.

        The caller deletes the directory when the server stops.
        """
        path = Path(tempfile.mkdtemp(prefix="mcp-settings-")) / "settings.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(msgspec.json.encode(self))
        os.environ[HANDOFF_ENV] = str(path)
        return path

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Add one ``--flag`` per field, documented with the field's description and env var."""
        hints = typing.get_type_hints(cls, include_extras=True)
        for name in cls.__struct_fields__:
            hint = hints[name]
            meta = next((m for m in getattr(hint, "__metadata__", ()) if isinstance(m, msgspec.Meta)), None)
            description = meta.description if meta and meta.description else ""
            flag = "--" + name.replace("_", "-")
            parser.add_argument(
                flag,
                dest=name,
                default=None,
                metavar=name.upper(),
                help=f"{description} [env {name.upper()}]",
            )

    @classmethod
    def from_args(cls: type[S], args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> S:
        """Environment first, then any flag given on the command line."""
        overrides: dict[str, Any] = {}
        for name in cls.__struct_fields__:
            value = getattr(args, name, None)
            if value is not None:
                overrides[name] = _csv(value) if _is_list(cls, name) else value
        return cls.from_env(environ, **overrides)


class SettingsError(ValueError):
    """A setting has a value the app cannot use; the message names the variable."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an interface to listen on) is reachable from this machine only."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_trusted_proxy_entry(entry: str) -> bool:
    """Whether uvicorn reads ``entry`` as an address or a network.

    uvicorn silently treats anything else as a literal that never matches a peer, so a typo
    (``10.0.0.1/8``, host bits set) would quietly trust nobody; we refuse it at start-up instead.
    """
    if entry == "*":
        return True
    try:
        if "/" in entry:
            ipaddress.ip_network(entry)
        else:
            ipaddress.ip_address(entry)
    except ValueError:
        return False
    return True


def _is_list(cls: type[BaseSettings], name: str) -> bool:
    hint = typing.get_type_hints(cls)[name]
    return typing.get_origin(hint) is list


def _env_message(message: str) -> str:
    # msgspec says "Expected `int`, got `str` - at `$.port`"; name the variable instead.
    if " - at `$." in message:
        text, _, path = message.partition(" - at `$.")
        field = path.rstrip("`").split("[")[0]
        return f"{field.upper()}: {text}"
    return message
