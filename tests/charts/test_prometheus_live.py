"""A real Prometheus scrapes the apps as the chart starts them, with the chart's prod alerts loaded.

The pods and the database come from the cluster emulation of tests/charts/test_manifests_run.py
(values/staging.yaml: the pgvector StatefulSet, which this test can stop and start again). Prometheus
(``/usr/bin/prometheus``, Debian's 2.42) scrapes each pod's metrics port through static_configs that
carry the labels the chart's ServiceMonitors give a target (job = the Service's app.kubernetes.io/name,
app_kubernetes_io_instance from targetLabels, namespace, pod, container, service, endpoint), every 1 s,
and evaluates the PrometheusRule rendered from values/prod.yaml unchanged (same release and namespace)
every 2 s. A client sends steady traffic to both apps and polls /ready like the kubelet.

Proved here, against that Prometheus:
- steady state: every rule evaluates without error, and no alert is pending or firing;
- every query of every dashboard panel returns data, except the ones listed in NEEDS_ELSEWHERE;
- PostgreSQL stopped: McpDatabaseUnreachable turns pending for both apps within one app probe
  interval + probe timeout + scrape + evaluation (its ``for: 1m`` is left as rendered; pending is
  what shows the expression saw the outage); PostgreSQL started again: the alert clears.
The latencies are printed (``-s``) and recorded in docs/reliability.md.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from platform_common.health import DATABASE_PROBE_SECONDS, PROBE_TIMEOUT_SECONDS
from tests.charts.cluster_emulation import (
    NAMESPACE,
    REPO,
    Platform,
    Pod,
    free_port,
    http_get,
    key,
    pod_labels,
    running_platform,
)
from tests.charts.conftest import RELEASE

if TYPE_CHECKING:
    from tests.charts.conftest import Rendered

SCRAPE_SECONDS = 1
EVAL_SECONDS = 2
# Stop → pending: the app notices within one probe (period + timeout), Prometheus within a scrape and an
# evaluation; plus slack for a loaded 2-core machine.
PENDING_WITHIN = DATABASE_PROBE_SECONDS + PROBE_TIMEOUT_SECONDS + SCRAPE_SECONDS + EVAL_SECONDS + 4
CLEAR_WITHIN = PENDING_WITHIN
DASHBOARD = REPO / "charts" / "mcp-platform" / "files" / "dashboard.json"
# Dashboard series this test cannot produce, and why. (No panel uses kube-state-metrics or cAdvisor.)
NEEDS_ELSEWHERE = {
    "registry_upstream_sync_failures_total": "exported once an upstream MCP server is registered and synced",
    "registry_upstream_last_sync_success_timestamp": "exported once an upstream MCP server has synced",
}


def prometheus_binary() -> str:
    found = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
    if found is None:
        msg = "prometheus not found: make system-packages (run by make test) could not install it"
        print(msg)
        pytest.skip(msg)
    return found


class Prometheus:
    """A Prometheus server on a free port, queried through its HTTP API."""

    def __init__(self, port: int) -> None:
        self.port = port

    def api(self, path: str, **params: str) -> Any:
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", f"/api/v1/{path}{query}")
            body = json.loads(connection.getresponse().read())
        finally:
            connection.close()
        assert body["status"] == "success", body
        return body["data"]

    def alerts(self) -> list[dict[str, Any]]:
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts

    def query(self, expr: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=expr)["result"]
        return result


def scrape_targets(platform: Platform) -> list[dict[str, Any]]:
    """One static_config per app pod, labelled as its ServiceMonitor would label the target."""
    configs = []
    for pod in platform.pods.values():
        ports = {p["name"]: p["containerPort"] for p in pod.container.get("ports", [])}
        if "metrics" not in ports:
            continue
        service = next(
            s
            for s in platform.cluster.services()
            if any(p.get("name") == "metrics" for p in s["spec"]["ports"])
            and s["spec"].get("selector", {}).items() <= pod_labels(pod.workload).items()
        )
        labels = service["metadata"]["labels"]
        configs.append(
            {
                "targets": [f"127.0.0.1:{platform.cluster.host_port(pod.workload, ports['metrics'])}"],
                "labels": {
                    "job": labels["app.kubernetes.io/name"],  # jobLabel: app.kubernetes.io/name
                    "app_kubernetes_io_instance": labels["app.kubernetes.io/instance"],  # targetLabels
                    "namespace": NAMESPACE,
                    "pod": pod.name,
                    "container": pod.container["name"],
                    "service": service["metadata"]["name"],
                    "endpoint": "metrics",
                },
            }
        )
    return configs


@contextlib.contextmanager
def running_prometheus(platform: Platform, rule_groups: dict[str, Any]) -> Iterator[Prometheus]:
    workdir = Path(tempfile.mkdtemp(prefix="mcp-prometheus-"))
    (workdir / "rules.yaml").write_text(yaml.safe_dump(rule_groups))
    config = {
        "global": {"scrape_interval": f"{SCRAPE_SECONDS}s", "evaluation_interval": f"{EVAL_SECONDS}s"},
        "rule_files": [str(workdir / "rules.yaml")],
        "scrape_configs": [{"job_name": "mcp-platform", "static_configs": scrape_targets(platform)}],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    argv = [
        prometheus_binary(),
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with (workdir / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while http_get(port, "/-/ready", 2)[0] != 200:
            assert process.poll() is None, (workdir / "prometheus.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "Prometheus not ready within 30 s"
            time.sleep(0.2)
        yield Prometheus(port)
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def steady_traffic(pods: list[Pod]) -> Iterator[None]:
    """Requests to every app (a few a second) and a /ready poll every 5 s, as the kubelet does."""
    stop = threading.Event()

    def run() -> None:
        rounds = 0
        while not stop.is_set():
            for pod in pods:
                port = next(p["containerPort"] for p in pod.container["ports"] if p["name"] == "http")
                host_port = pod.cluster.host_port(pod.workload, port)
                for path in ("/health", "/api/v1/does-not-exist", "/schema/openapi.json"):
                    http_get(host_port, path, 5)
                if rounds % 25 == 0:
                    http_get(host_port, "/ready", 5)
            rounds += 1
            stop.wait(0.2)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


def prod_rule_groups() -> dict[str, Any]:
    """The PrometheusRule ``spec`` of values/prod.yaml, rendered with this emulation's release and namespace."""
    from tests.charts.test_prometheus_rules import rule_groups

    return rule_groups("prod")


@pytest.fixture(scope="module")
def live(render_values: Callable[[str], Rendered], runtime_venv: Path) -> Iterator[tuple[Platform, Prometheus]]:
    with running_platform(render_values("staging"), runtime_venv) as platform:
        apps = [pod for pod in platform.pods.values() if any(p["name"] == "metrics" for p in pod.container["ports"])]
        assert len(apps) == 2, f"expected both apps, got {[key(p.workload) for p in apps]}"
        with running_prometheus(platform, prod_rule_groups()) as prometheus, steady_traffic(apps):
            yield platform, prometheus


def wait(predicate: Callable[[], bool], timeout: float, what: str, describe: Callable[[], str] = lambda: "") -> float:
    """Seconds until ``predicate()`` holds, polled every 0.25 s; fails after ``timeout`` with ``describe()``."""
    started = time.monotonic()
    while not predicate():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout:.0f}s {describe()}"
        time.sleep(0.25)
    return time.monotonic() - started


def database_alerts(prometheus: Prometheus) -> dict[str, str]:
    """{job: state} of McpDatabaseUnreachable."""
    return {
        a["labels"]["job"]: a["state"]
        for a in prometheus.alerts()
        if a["labels"]["alertname"] == "McpDatabaseUnreachable"
    }


def test_steady_state_no_alert_pending_or_firing(live: tuple[Platform, Prometheus]) -> None:
    _, prometheus = live
    wait(lambda: len(prometheus.query("up == 1")) == 2, 30, "both targets scraped")
    jobs = {s["metric"]["job"] for s in prometheus.query("max by (job) (mcp_database_up) == 1")}
    wait(
        lambda: len(prometheus.query("max by (job) (mcp_database_up) == 1")) == 2,
        30,
        "database up in both apps",
        describe=lambda: str(prometheus.query("mcp_database_up")),
    )
    time.sleep(5 * EVAL_SECONDS)  # several evaluation cycles with both apps healthy and serving
    groups = prometheus.api("rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    rendered = [r["alert"] for g in prod_rule_groups()["groups"] for r in g["rules"]]
    assert sorted(r["name"] for r in rules) == sorted(rendered)  # every rendered alert is loaded
    assert all(r["health"] == "ok" for r in rules), [(r["name"], r.get("lastError")) for r in rules]
    assert all(r["lastEvaluation"] != "0001-01-01T00:00:00Z" for r in rules)
    assert prometheus.alerts() == [], prometheus.alerts()
    assert all(r["state"] == "inactive" for r in rules)
    print(f"steady state: {len(rules)} rules evaluated every {EVAL_SECONDS}s, no alert; jobs {sorted(jobs)}")


def test_every_dashboard_query_returns_data(live: tuple[Platform, Prometheus]) -> None:
    _, prometheus = live
    panels = json.loads(DASHBOARD.read_text())["panels"]
    checked, skipped = 0, []
    for panel in panels:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$namespace", NAMESPACE).replace("$release", RELEASE)
            elsewhere = [name for name in NEEDS_ELSEWHERE if name in expr]
            if elsewhere:
                skipped.append(f"{panel['title']}: {NEEDS_ELSEWHERE[elsewhere[0]]}")
                continue
            # Rates need two scrapes in their window: allow a few seconds when this test runs alone.
            wait(lambda expr=expr: bool(prometheus.query(expr)), 15, f"panel {panel['title']!r}: data for {expr}")
            checked += 1
    assert checked >= 10
    print(f"{checked} dashboard queries returned data; not produced here: {skipped}")


def test_database_outage_makes_the_alert_pending_then_clears(live: tuple[Platform, Prometheus]) -> None:
    platform, prometheus = live
    assert database_alerts(prometheus) == {}
    stopped = time.monotonic()
    platform.database.stop()
    try:
        pending = wait(
            lambda: set(database_alerts(prometheus)) == {"tool-registry", "tree-of-thoughts"},
            PENDING_WITHIN,
            "McpDatabaseUnreachable pending for both apps",
        )
        states = database_alerts(prometheus)
        assert set(states.values()) == {"pending"}, states  # for: 1m has not elapsed
        others = sorted({a["labels"]["alertname"] for a in prometheus.alerts()} - {"McpDatabaseUnreachable"})
    finally:
        restarted = time.monotonic()
        platform.database.restart()
    restart_took = time.monotonic() - restarted
    cleared = wait(lambda: database_alerts(prometheus) == {}, CLEAR_WITHIN, "McpDatabaseUnreachable cleared")
    outage = time.monotonic() - stopped
    print(
        f"McpDatabaseUnreachable: pending {pending:.1f}s after PostgreSQL stopped (bound {PENDING_WITHIN}s), "
        f"cleared {cleared:.1f}s after it was started again (restart took {restart_took:.1f}s); "
        f"whole outage {outage:.1f}s; scrape {SCRAPE_SECONDS}s, evaluation {EVAL_SECONDS}s, "
        f"app probe {DATABASE_PROBE_SECONDS:g}s; other alerts active meanwhile: {others or 'none'}"
    )
