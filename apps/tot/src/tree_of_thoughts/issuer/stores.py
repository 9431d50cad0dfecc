"""Where the key ring lives: a file under DATA_DIR/keys, or one Kubernetes Secret.

Both stores give the ring a version and write only if it is unchanged (compare-and-swap), so of
several processes or replicas that decide to rotate at once exactly one succeeds; the others see
``save`` return ``False``, reload, and use the winner's key.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import msgspec

from platform_common.settings import SettingsError
from tree_of_thoughts.issuer.keys import KeyRing

RING_FILE = "keyring.json"  # the file name, and the data key inside the Secret


class StoredRing(NamedTuple):
    ring: KeyRing
    version: str  # opaque: a content hash (file) or the Secret's resourceVersion


class KeyStore(Protocol):
    def load(self) -> StoredRing: ...

    def save(self, ring: KeyRing, version: str) -> bool:
        """Write ``ring`` if the stored version is still ``version``; ``False`` if someone else wrote."""
        ...


class FileKeyStore:
    """``<directory>/keyring.json`` (mode 600, directory 700), written atomically under a file lock."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / RING_FILE

    def load(self) -> StoredRing:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return StoredRing(KeyRing(), "")
        return StoredRing(msgspec.json.decode(data, type=KeyRing), hashlib.sha256(data).hexdigest())

    def save(self, ring: KeyRing, version: str) -> bool:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        with self._locked():
            if self.load().version != version:
                return False
            data = msgspec.json.encode(ring)
            temporary = self.directory / f".{RING_FILE}.{os.getpid()}.tmp"
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
            # O_EXCL + 0600: the private keys are never readable by anyone else, not even briefly.
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            temporary.replace(self.path)
            return True

    @contextlib.contextmanager
    def _locked(self) -> Any:
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock


class KubernetesKeyStore:
    """The ring in one pre-created Secret, written with a merge patch carrying its resourceVersion.

    The API server answers 409 Conflict when the resourceVersion is stale: another replica won the
    rotation. The app needs only get and patch on that one Secret (the chart's Role says so).
    """

    def __init__(self, api: Any, name: str, namespace: str) -> None:
        self.api, self.name, self.namespace = api, name, namespace

    def load(self) -> StoredRing:
        from kubernetes.client.exceptions import ApiException

        try:
            secret = self.api.read_namespaced_secret(self.name, self.namespace)
        except ApiException as exc:
            if exc.status == 404:
                raise RuntimeError(
                    f"Secret {self.namespace}/{self.name} does not exist; the chart creates it (empty is fine)"
                ) from None
            raise
        encoded = (secret.data or {}).get(RING_FILE)
        ring = msgspec.json.decode(base64.b64decode(encoded), type=KeyRing) if encoded else KeyRing()
        return StoredRing(ring, secret.metadata.resource_version)

    def save(self, ring: KeyRing, version: str) -> bool:
        from kubernetes.client.exceptions import ApiException

        body = {
            "metadata": {"resourceVersion": version},
            "data": {RING_FILE: base64.b64encode(msgspec.json.encode(ring)).decode()},
        }
        try:
            self.api.patch_namespaced_secret(
                self.name, self.namespace, body, _content_type="application/merge-patch+json"
            )
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True


def kubernetes_api(api_client: Any = None) -> Any:
    """A CoreV1Api: in-cluster service account, else the local kubeconfig (or the given client)."""
    from kubernetes import client, config

    if api_client is None:
        try:
            config.load_incluster_config()  # type: ignore[no-untyped-call]
        except config.ConfigException:
            config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.CoreV1Api(api_client)


def build_store(kind: str, data_dir: str, secret_name: str, secret_namespace: str, api_client: Any = None) -> KeyStore:
    if kind == "file":
        return FileKeyStore(Path(data_dir) / "keys")
    if not secret_name:
        raise SettingsError("KEY_STORE=kubernetes needs KEY_SECRET_NAME")
    namespace = secret_namespace or own_namespace()
    return KubernetesKeyStore(kubernetes_api(api_client), secret_name, namespace)


def own_namespace() -> str:
    path = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
    if path.exists():
        return path.read_text().strip()
    raise SettingsError("outside a cluster, name the namespace (KEY_SECRET_NAMESPACE, --namespace)")
