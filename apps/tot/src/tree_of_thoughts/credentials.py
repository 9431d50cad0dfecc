"""``tot credentials ensure``: the database passwords, generated once inside the cluster.

A chart that generates passwords in its templates needs ``lookup`` to keep them, and ``lookup`` sees
nothing under ``helm template`` (Argo CD): every sync would make new ones. So the chart renders no
password at all; a pre-install/pre-upgrade hook Job runs this command, which creates the database
Secret once with random passwords and, on every later run, keeps them and only rewrites the URL keys
(they follow the chart's values: a pooler turned on, read replicas added). Renders stay byte-identical.

Passwords are never printed. An existing Secret's passwords always win, which is also the upgrade path
from charts that rendered the Secret themselves: the Secret keeps its name and its passwords.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import secrets
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

logger = logging.getLogger(__name__)

_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 32
_WRITE_ATTEMPTS = 5


class CredentialsError(RuntimeError):
    """A request that would lose or contradict stored credentials; the message says what to do."""


@dataclass(frozen=True)
class DatabaseSecret:
    """What the chart asks for: a Secret with passwords (generated once) and URLs carrying one of them."""

    name: str
    namespace: str
    username: str
    password_keys: Sequence[str]  # the first one is the application role's, the one the URLs carry
    urls: Mapping[str, str]  # key -> URL without a password, e.g. postgresql://mcp@host:5432/mcp
    basic_auth_secret: str = ""  # also keep a kubernetes.io/basic-auth copy (CloudNativePG's initdb secret)
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    # Deployments whose pods read this Secret at start: their pod template carries a checksum of it
    restart: Sequence[str] = ()


# The pod-template annotation that rolls the apps when the Secret's content changes (a chart cannot put a
# checksum of a Secret it does not render, and a subchart cannot see the umbrella's values to compute one).
CHECKSUM_ANNOTATION = "checksum/database-secret"


def new_password() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(PASSWORD_LENGTH))


def url_with_password(url: str, username: str, password: str) -> str:
    """``url`` with ``username:password`` as its user info; the URL must name exactly ``username``."""
    parts = urlsplit(url)
    if parts.username != username or parts.password is not None:
        raise CredentialsError(f"URL for {username!r} must be postgresql://{username}@host/db without a password")
    host = parts.netloc.rsplit("@", 1)[1]
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def ensure(api: Any, wanted: DatabaseSecret) -> str:
    """Create or update the Secret(s) as ``wanted`` says; returns a one-line summary without secrets.

    ``api`` is a ``kubernetes.client.CoreV1Api``. Writes carry the read resourceVersion, so two Jobs
    racing (a retried hook) cannot both generate: the loser re-reads and keeps the winner's passwords.
    """
    from kubernetes.client.exceptions import ApiException

    for _ in range(_WRITE_ATTEMPTS):
        current = _read(api, wanted.namespace, wanted.name)
        copy = _read(api, wanted.namespace, wanted.basic_auth_secret) if wanted.basic_auth_secret else None
        stored = _decoded(current)
        # The application password: this Secret's, else the basic-auth copy's (an older chart rendered both).
        first = wanted.password_keys[0]
        passwords = {key: stored.get(key) or "" for key in wanted.password_keys}
        if not passwords[first] and copy is not None:
            passwords[first] = _decoded(copy).get("password", "")
        generated = [key for key, value in passwords.items() if not value]
        if current is not None and first in generated:
            raise CredentialsError(
                f"Secret {wanted.name} exists without the key {first!r}: the database already has a password this "
                "command cannot know. Add the key with the current password, or delete the Secret on a new install."
            )
        for key in generated:
            passwords[key] = new_password()
        data = {"username": wanted.username, **passwords}
        data |= {key: url_with_password(url, wanted.username, passwords[first]) for key, url in wanted.urls.items()}
        body = _secret(wanted, wanted.name, "Opaque", data, current)
        try:
            if current is None:
                api.create_namespaced_secret(wanted.namespace, body)
            elif stored != data:
                api.replace_namespaced_secret(wanted.name, wanted.namespace, body)
            if wanted.basic_auth_secret and copy is None:
                auth = {"username": wanted.username, "password": passwords[first]}
                api.create_namespaced_secret(
                    wanted.namespace,
                    _secret(wanted, wanted.basic_auth_secret, "kubernetes.io/basic-auth", auth, None),
                )
        except ApiException as exc:
            if exc.status == 409:  # created or changed since we read it: read again, keep what is there
                continue
            raise
        rolled = roll_deployments(api, wanted, checksum(data))
        return _summary(wanted, current, copy, generated, stored, data) + rolled
    raise CredentialsError(f"Secret {wanted.name} kept changing under {_WRITE_ATTEMPTS} attempts; run the Job again")


def checksum(data: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(dict(data), sort_keys=True).encode()).hexdigest()


def roll_deployments(api: Any, wanted: DatabaseSecret, digest: str) -> str:
    """Put the Secret's checksum on each named Deployment's pod template: an unchanged Secret changes
    nothing (the same value), a changed one rolls the pods so they read it. A Deployment that does not
    exist yet (the first install) is skipped: its pods will read the Secret when they start."""
    from kubernetes.client import AppsV1Api
    from kubernetes.client.exceptions import ApiException

    apps = AppsV1Api(api.api_client)
    patch = {"spec": {"template": {"metadata": {"annotations": {CHECKSUM_ANNOTATION: digest}}}}}
    patched = []
    for name in wanted.restart:
        try:
            # The answer is not needed: no model to build (and validate) from it.
            apps.patch_namespaced_deployment(name, wanted.namespace, patch, _preload_content=False)
        except ApiException as exc:
            if exc.status != 404:
                raise
            continue
        patched.append(name)
    return f"; checksum on {', '.join(patched)}" if patched else ""


def _summary(
    wanted: DatabaseSecret,
    current: Any,
    copy: Any,
    generated: list[str],
    stored: dict[str, str],
    data: dict[str, str],
) -> str:
    changed = sorted(k for k in wanted.urls if stored.get(k) != data[k])
    removed = sorted(set(stored) - set(data))
    verb = "created" if current is None else "kept"
    text = f"{verb} Secret {wanted.name}"
    if generated:
        text += f"; generated {', '.join(generated)}"
    if current is not None and (changed or removed):
        text += f"; URL keys now {', '.join(sorted(wanted.urls))}"
        if not wanted.restart:
            text += " (pods read them at start: restart the apps to use them)"
    if wanted.basic_auth_secret:
        text += f"; {'created' if copy is None else 'kept'} Secret {wanted.basic_auth_secret}"
    return text


def _read(api: Any, namespace: str, name: str) -> Any:
    from kubernetes.client.exceptions import ApiException

    try:
        return api.read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


def _decoded(secret: Any) -> dict[str, str]:
    if secret is None:
        return {}
    return {k: base64.b64decode(v).decode() for k, v in (secret.data or {}).items()}


def _secret(wanted: DatabaseSecret, name: str, kind: str, data: Mapping[str, str], current: Any) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": wanted.namespace,
        "labels": dict(wanted.labels),
        "annotations": dict(wanted.annotations),
    }
    if current is not None:  # keep what others put there; the resourceVersion makes the write conditional
        metadata["labels"] = {**(current.metadata.labels or {}), **wanted.labels}
        metadata["annotations"] = {**(current.metadata.annotations or {}), **wanted.annotations}
        metadata["resourceVersion"] = current.metadata.resource_version
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "type": kind, "metadata": metadata, "data": encoded}
