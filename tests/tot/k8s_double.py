"""An in-test double of the Kubernetes Secrets API: GET, PUT and PATCH of one Secret, with resourceVersion
(and PATCH of a Deployment's pod-template annotations).

A real HTTP server on 127.0.0.1, so the real ``kubernetes`` client (pointed at it with a
``Configuration(host=...)``) is what the tests exercise. A write whose ``metadata.resourceVersion``
is stale gets 409 Conflict, as from the API server. POST to the collection creates a Secret (409
AlreadyExists when the name is taken): only ``tot credentials ensure`` (the chart's hook Job) does that;
the key store must never need to (the chart renders its Secret).
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from kubernetes import client

_PATH = re.compile(r"/api/v1/namespaces/([^/]+)/secrets/([^/?]+)")
_COLLECTION = re.compile(r"/api/v1/namespaces/([^/]+)/secrets/?")
_DEPLOYMENT = re.compile(r"/apis/apps/v1/namespaces/([^/]+)/deployments/([^/?]+)")


class SecretsApi:
    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.conflicts = 0
        self.writes = 0
        # Deployments, only for their pod-template annotations (the credentials Job's checksum patch)
        self.deployments: dict[tuple[str, str], dict[str, str]] = {}

    def create(self, namespace: str, name: str) -> None:
        self.secrets[(namespace, name)] = {
            "apiVersion": "v1",
            "kind": "Secret",
            "type": "Opaque",
            "metadata": {
                "name": name,
                "namespace": namespace,
                "resourceVersion": "1",
                "labels": {"app.kubernetes.io/name": "tree-of-thoughts"},
            },
        }

    def handle(self, method: str, path: str, body: dict[str, Any] | None) -> tuple[int, dict[str, Any]]:
        deployment = _DEPLOYMENT.fullmatch(path.split("?")[0])
        if deployment and method == "PATCH":
            assert body is not None
            return self._patch_deployment((deployment.group(1), deployment.group(2)), body)
        collection = _COLLECTION.fullmatch(path.split("?")[0])
        if collection and method == "POST":
            assert body is not None
            return self._create(collection.group(1), body)
        match = _PATH.fullmatch(path.split("?")[0])
        if not match:
            return 404, _status(404, "NotFound", "no such path")
        key = (match.group(1), match.group(2))
        with self.lock:
            secret = self.secrets.get(key)
            if secret is None:
                return 404, _status(404, "NotFound", f'secrets "{key[1]}" not found')
            if method == "GET":
                return 200, secret
            assert body is not None
            wanted = body.get("metadata", {}).get("resourceVersion")
            if wanted is not None and wanted != secret["metadata"]["resourceVersion"]:
                self.conflicts += 1
                return 409, _status(
                    409,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest version and try again",
                )
            if method == "PUT":
                updated = {**body, "metadata": {**secret["metadata"], **body.get("metadata", {})}}
            else:  # merge patch: maps merge, everything else replaces
                updated = {**secret, "data": {**(secret.get("data") or {}), **(body.get("data") or {})}}
            updated["metadata"] = {
                **updated["metadata"],
                "resourceVersion": str(int(secret["metadata"]["resourceVersion"]) + 1),
            }
            self.secrets[key] = updated
            self.writes += 1
            return 200, updated

    def _patch_deployment(self, key: tuple[str, str], body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self.lock:
            if key not in self.deployments:
                return 404, _status(404, "NotFound", f'deployments.apps "{key[1]}" not found')
            self.deployments[key].update(body["spec"]["template"]["metadata"]["annotations"])
            template = {"metadata": {"annotations": dict(self.deployments[key])}}
            return 200, {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": key[1]},
                "spec": {"template": template},
            }

    def _create(self, namespace: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        name = body["metadata"]["name"]
        with self.lock:
            if (namespace, name) in self.secrets:
                return 409, _status(409, "AlreadyExists", f'secrets "{name}" already exists')
            metadata = {**body["metadata"], "namespace": namespace, "resourceVersion": "1"}
            self.secrets[(namespace, name)] = {**body, "metadata": metadata}
            self.writes += 1
            return 201, self.secrets[(namespace, name)]


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@contextlib.contextmanager
def secrets_api() -> Iterator[tuple[SecretsApi, str]]:
    """Serve a ``SecretsApi`` on a loopback port; yields it and its base URL."""
    api = SecretsApi()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            if self.command == "PATCH":  # the key store's merge patch; a strategic one for Deployments
                assert self.headers["Content-Type"] in {
                    "application/merge-patch+json",
                    "application/strategic-merge-patch+json",
                }, self.headers["Content-Type"]
            status, payload = api.handle(self.command, self.path, body)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_PATCH = do_POST = _serve

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield api, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def api_client(url: str) -> client.ApiClient:
    """The official client, configured for the double instead of a cluster."""
    return client.ApiClient(client.Configuration(host=url))
