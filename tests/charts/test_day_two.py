"""The chart on day two: generated names within Kubernetes' limits for any release name Helm accepts.

Rendered offline with both Helm binaries (see test_helm_chart.py); each render is a subprocess, so the
renders of a test run in a thread pool.
"""

from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.test_helm_chart import API_VERSIONS, BINARIES, CHART, VALUES, helm_bin, pod_labels

Docs = list[dict[str, Any]]

# The longest release name Helm accepts (53 characters).
LONG_RELEASE = "r" + "x" * 50 + "-1"
NAMESPACE = "mcp-test"
# Kinds whose names Kubernetes accepts up to 253 characters (DNS subdomain). Their suffixed names are NOT
# shortened: renaming the Tree-of-Thoughts key Secret would lose the signing keys, a RoleBinding's roleRef is
# immutable, and CNPG's bootstrap Secret is only read at initdb. Everything else is held to 63 (a DNS label:
# Service names, the Job name copied into the batch.kubernetes.io/job-name label, ...).
SUBDOMAIN_KINDS = {"Secret", "ConfigMap", "Role", "RoleBinding", "ServiceAccount", "PersistentVolumeClaim"}
# A CronJob's Jobs are "<name>-<8 digits>" and a StatefulSet's revisions "<name>-<10 characters>": 52.
LIMIT_52 = {"CronJob", "StatefulSet"}

# Every feature that adds a named object, in an embedded and a CloudNativePG flavour.
ALL_FEATURES = [
    *("--set", "tool-registry.canary.enabled=true"),
    *("--set", "tree-of-thoughts.blueGreen.enabled=true"),
    *("--set", "networkPolicy.enabled=true"),
    *("--set", "monitoring.dashboard.enabled=true"),
    *("--set", "monitoring.rules.enabled=true"),
    *("--set", "tls.certificate=true"),
    *("--set", "tls.selfSigned=true"),
    *("--set", "gateway.enabled=true"),
    *("--set", "ingress.enabled=true"),
    *("--set", "resourceQuota.enabled=true"),
    *("--set", "limitRange.enabled=true"),
]
FEATURE_SETS = {
    "embedded": [*ALL_FEATURES, "--set", "pgvector.backup.enabled=true"],
    "cloudnativepg": [
        *ALL_FEATURES,
        *("-f", str(VALUES["prod"])),
        *("--set", "tree-of-thoughts.blueGreen.enabled=false"),
        *("--set", "tree-of-thoughts.canary.enabled=true"),
    ],
}


def helm_template(binary: Path, release: str, *args: str) -> Docs:
    cmd = [str(binary), "template", release, str(CHART), "--namespace", NAMESPACE, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def render_many(jobs: dict[str, tuple[Path, str, list[str]]]) -> dict[str, Docs]:
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {k: pool.submit(helm_template, b, r, *a, *API_VERSIONS) for k, (b, r, a) in jobs.items()}
        return {k: f.result() for k, f in futures.items()}


def name_problems(docs: Docs) -> list[str]:
    problems = []
    for d in docs:
        kind, name = d["kind"], d["metadata"]["name"]
        limit = 52 if kind in LIMIT_52 else 253 if kind in SUBDOMAIN_KINDS else 63
        if len(name) > limit:
            problems.append(f"{kind}/{name}: {len(name)} > {limit}")
        labels = dict(d["metadata"].get("labels") or {})
        if kind in {"Deployment", "StatefulSet", "Job", "CronJob", "Pod"}:
            labels.update(pod_labels(d))
        problems += [f"{kind}/{name}: label {k} is {len(str(v))} long" for k, v in labels.items() if len(str(v)) > 63]
    return problems


def references(docs: Docs) -> list[str]:
    """Names one object uses to point at another, which must be rendered objects."""
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    missing = []
    for d in docs:
        spec = d.get("spec") or {}
        if d["kind"] == "HorizontalPodAutoscaler":
            target = spec["scaleTargetRef"]
            missing += [] if (target["kind"], target["name"]) in names else [f"HPA target {target['name']}"]
        if d["kind"] == "HTTPRoute":
            for rule in spec["rules"]:
                missing += [f"route {b['name']}" for b in rule["backendRefs"] if ("Service", b["name"]) not in names]
        if d["kind"] == "Ingress":
            for rule in spec["rules"]:
                for p in rule["http"]["paths"]:
                    svc = p["backend"]["service"]["name"]
                    missing += [] if ("Service", svc) in names else [f"ingress {svc}"]
        if d["kind"] == "StatefulSet" and ("Service", spec["serviceName"]) not in names:
            missing.append(f"serviceName {spec['serviceName']}")
    return missing


@pytest.mark.parametrize("binary", list(BINARIES))
def test_names_fit_their_limits_with_the_longest_release_name(binary: str) -> None:
    helm = helm_bin(binary)
    rendered = render_many({k: (helm, LONG_RELEASE, v) for k, v in FEATURE_SETS.items()})
    for flavour, docs in rendered.items():
        kinds = {d["kind"] for d in docs}
        assert {"StatefulSet", "Job", "HTTPRoute", "Ingress", "NetworkPolicy"} <= kinds or flavour != "embedded"
        assert name_problems(docs) == [], flavour
        assert references(docs) == [], flavour
        # Suffixes survive the cut, so the names stay distinct.
        services = [d["metadata"]["name"] for d in docs if d["kind"] == "Service"]
        assert len(services) == len(set(services))
        assert any(s.endswith("-canary") for s in services)
        if flavour == "embedded":
            cronjob = next(d for d in docs if d["kind"] == "CronJob")
            assert cronjob["metadata"]["name"].endswith("-backup")
            assert len(cronjob["metadata"]["name"]) == 52
            job = next(d for d in docs if d["kind"] == "Job")
            assert job["metadata"]["name"].endswith("-migrate")


def test_short_release_names_are_unchanged() -> None:
    """Truncation only applies when a name would be too long: existing releases keep their names."""
    docs = helm_template(helm_bin("helm4"), "mcp", *FEATURE_SETS["embedded"], *API_VERSIONS)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for expected in [
        ("Service", "mcp-tool-registry-canary"),
        ("Deployment", "mcp-tool-registry-canary"),
        ("Deployment", "mcp-tree-of-thoughts-blue"),
        ("CronJob", "mcp-pgvector-backup"),
        ("StatefulSet", "mcp-pgvector"),
        ("Service", "mcp-pgvector-headless"),
        ("Job", "mcp-tool-registry-migrate"),
        ("NetworkPolicy", "mcp-mcp-platform-default-deny"),
        ("Issuer", "mcp-mcp-platform-selfsigned"),
        ("Pod", "mcp-mcp-platform-test"),
    ]:
        assert expected in names
