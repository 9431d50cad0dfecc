"""Every configuration renders and validates: a pairwise (all-pairs) covering set of the chart's options.

The full cartesian product of the factors below is 552,960 renders; instead every PAIR of factor
levels (e.g. "cloudnativepg with Helm 3", "blue-green with the 53-character release name", "OpenShift
with the tests off") appears in at least one configuration. The set is built greedily (AETG-style, fixed
seed, so it is the same on every run) and rendered in a thread pool (each render is a `helm template`
subprocess). Every render is checked for: success, name and label-value limits, references between
objects, CRD objects against the vendored CRD schemas, and everything against the strict Kubernetes
1.33 schemas (kubernetes-validate, one process for the whole set).
"""

from __future__ import annotations

import itertools
import json
import random
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.charts.test_day_two import LONG_RELEASE, name_problems, pod_specs, references
from tests.charts.test_helm_chart import API_VERSIONS, BINARIES, CHART, crd_schema, helm_bin

Docs = list[dict[str, Any]]
NAMESPACE = "mcp-matrix"
BIG_BUDGET = [  # the connection budget is tested on its own; here it must not hide other failures
    *("--set-string", "database.cloudnativepg.parameters.max_connections=2000"),
    *("--set-string", "database.cloudnativepg.pooler.parameters.default_pool_size=2000"),
    *("--set-string", "database.cloudnativepg.pooler.parameters.max_client_conn=4000"),
]
EXTERNAL_SECRET = [
    *("--set", "database.external.existingSecret=db"),
    *("--set", "tool-registry.database.secretName=db", "--set", "tree-of-thoughts.database.secretName=db"),
]
BARMAN = (
    '{"destinationPath":"s3://b/p","s3Credentials":{"accessKeyId":{"name":"s3","key":"id"},'
    '"secretAccessKey":{"name":"s3","key":"secret"}}}'
)

FACTORS: dict[str, list[str]] = {
    "helm": list(BINARIES),
    "registry": ["on", "off"],
    "tot": ["on", "off"],
    "database": ["embedded", "cloudnativepg", "cloudnativepg-pooler", "external-url", "external-secret"],
    "passwords": ["generated", "gitops"],
    "routing": ["none", "ingress", "httproute", "both"],
    "tls": ["none", "cert-manager", "self-signed"],
    "tests": ["on", "off"],
    "monitoring": ["on", "off"],
    "backups": ["on", "off"],
    "tracks": ["stable", "canary", "blue-green"],
    "autoscaling": ["on", "off"],
    "networkPolicy": ["on", "off"],
    "release": ["short", "longest"],
    "openshift": ["no", "detected", "forced"],
}


def pairwise(factors: dict[str, list[str]], seed: int = 10, candidates: int = 60) -> list[dict[str, str]]:
    """A small set of configurations covering every pair of levels of two different factors."""
    names = list(factors)
    uncovered = {((a, x), (b, y)) for a, b in itertools.combinations(names, 2) for x in factors[a] for y in factors[b]}
    rng = random.Random(seed)
    rows: list[dict[str, str]] = []

    def gain(row: dict[str, str]) -> int:
        return sum(((a, row[a]), (b, row[b])) in uncovered for a, b in itertools.combinations(names, 2))

    while uncovered:
        best: dict[str, str] | None = None
        for _ in range(candidates):
            # Seed each candidate with an uncovered pair, fill the other factors greedily in random order.
            (a, x), (b, y) = rng.choice(sorted(uncovered))
            row = {a: x, b: y}
            for name in rng.sample(names, len(names)):
                if name in row:
                    continue
                row[name] = max(
                    factors[name],
                    key=lambda level, name=name: sum(
                        (((name, level), (o, row[o])) in uncovered or ((o, row[o]), (name, level)) in uncovered)
                        for o in row
                    ),
                )
            if best is None or gain(row) > gain(best):
                best = row
        assert best is not None
        rows.append(best)
        uncovered -= {((a, best[a]), (b, best[b])) for a, b in itertools.combinations(names, 2)}
    return rows


def helm_args(cfg: dict[str, str]) -> list[str]:
    """Values for one configuration (plus what a level needs to be valid on its own)."""
    s = "--set"
    args = [s, f"tool-registry.enabled={cfg['registry'] == 'on'}", s, f"tree-of-thoughts.enabled={cfg['tot'] == 'on'}"]
    db = cfg["database"]
    if db == "embedded":
        if cfg["backups"] == "on":
            args += [s, "pgvector.backup.enabled=true"]
    else:
        args += [s, "pgvector.enabled=false"]
    if db.startswith("cloudnativepg"):
        args += [s, "database.mode=cloudnativepg", *BIG_BUDGET]
        if db.endswith("pooler"):
            args += [s, "database.cloudnativepg.pooler.enabled=true"]
        if cfg["backups"] == "on":
            args += [s, "database.cloudnativepg.backup.enabled=true"]
            args += ["--set-json", f"database.cloudnativepg.backup.barmanObjectStore={BARMAN}"]
    if db == "external-url":
        args += [s, "database.mode=external", s, "database.external.url=postgresql://u:p@db.example:5432/mcp"]
    if db == "external-secret":
        args += [s, "database.mode=external", *EXTERNAL_SECRET]
    if cfg["passwords"] == "gitops" and db in {"embedded", "cloudnativepg", "cloudnativepg-pooler"}:
        secret = "mcp-db-credentials" if db == "embedded" else "mcp-db-app"
        if cfg["release"] == "longest" and db != "embedded":
            secret = f"{LONG_RELEASE}-db"[:50].rstrip("-") + "-app"
        args += [s, "database.generatePasswords=false"]
        if db == "embedded":
            args += [s, f"pgvector.auth.existingSecret={secret}"]
        for app in ("tool-registry", "tree-of-thoughts"):
            args += [s, f"{app}.database.passwordSecret.name={secret}"]
    if cfg["routing"] in {"ingress", "both"}:
        args += [s, "ingress.enabled=true"]
    if cfg["routing"] in {"httproute", "both"}:
        args += [s, "gateway.enabled=true"]
    if cfg["tls"] != "none":
        args += [s, "tls.certificate=true", s, f"tls.selfSigned={cfg['tls'] == 'self-signed'}"]
    args += [s, f"tests.enabled={cfg['tests'] == 'on'}"]
    if cfg["monitoring"] == "on":
        args += [s, "monitoring.rules.enabled=true", s, "monitoring.dashboard.enabled=true"]
        args += [s, "tool-registry.serviceMonitor.enabled=true", s, "tree-of-thoughts.serviceMonitor.enabled=true"]
    for app in ("tool-registry", "tree-of-thoughts"):
        if cfg["tracks"] == "canary":
            args += [s, f"{app}.canary.enabled=true"]
        if cfg["tracks"] == "blue-green":
            args += [s, f"{app}.blueGreen.enabled=true", s, f"{app}.blueGreen.retiredTracks={{green}}"]
        if cfg["autoscaling"] == "on":
            args += [s, f"{app}.autoscaling.enabled=true", s, f"{app}.autoscaling.maxReplicas=4"]
    if cfg["tracks"] != "stable" or cfg["autoscaling"] == "on":
        args += [s, "tree-of-thoughts.keyStore.type=kubernetes"]  # a file key store is per pod
    args += [s, f"networkPolicy.enabled={cfg['networkPolicy'] == 'on'}"]
    if cfg["openshift"] == "detected":
        args += ["--api-versions", "security.openshift.io/v1"]  # adaptSecurityContext auto sees OpenShift
    if cfg["openshift"] == "forced":
        args += [s, "global.compatibility.openshift.adaptSecurityContext=force"]
    if db.startswith("external"):
        args += [s, "networkPolicy.database.externalCidrs={10.20.0.0/16}"]  # required with policies
    return args


def render(cfg: dict[str, str]) -> tuple[dict[str, str], str, str]:
    release = LONG_RELEASE if cfg["release"] == "longest" else "mcp"
    cmd = [str(helm_bin(cfg["helm"])), "template", release, str(CHART), "-n", NAMESPACE, *helm_args(cfg)]
    proc = subprocess.run([*cmd, *API_VERSIONS], capture_output=True, text=True, timeout=120, check=False)
    return cfg, proc.stdout, proc.stderr if proc.returncode else ""


def crd_problems(docs: Docs) -> list[str]:
    problems = []
    for doc in docs:
        path = crd_schema(doc)
        if path is None:
            continue
        schema = json.loads(path.read_text())
        validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)(schema)
        problems += [f"{doc['kind']}/{doc['metadata']['name']}: {e.message[:160]}" for e in validator.iter_errors(doc)]
    return problems


def openshift_problems(cfg: dict[str, str], docs: Docs) -> list[str]:
    """In OpenShift mode no pod or container sets a fixed UID/GID; elsewhere the apps' 1001 stays."""
    problems = []
    for (kind, name), spec in pod_specs(docs).items():
        contexts = [spec.get("securityContext") or {}] + [c.get("securityContext") or {} for c in spec["containers"]]
        fixed = any(k in ctx for ctx in contexts for k in ("runAsUser", "runAsGroup", "fsGroup"))
        if fixed != (cfg["openshift"] == "no"):
            problems.append(f"{kind}/{name}: fixed UID/GID {fixed} with openshift={cfg['openshift']}")
    return problems


MATRIX = pairwise(FACTORS)


def test_the_matrix_covers_every_pair() -> None:
    names = list(FACTORS)
    for a, b in itertools.combinations(names, 2):
        seen = {(row[a], row[b]) for row in MATRIX}
        assert seen == set(itertools.product(FACTORS[a], FACTORS[b])), (a, b)
    full = 1
    for levels in FACTORS.values():
        full *= len(levels)
    print(f"pairwise matrix: {len(MATRIX)} configurations instead of {full:,}")
    assert len(MATRIX) <= 40


def test_every_configuration_renders_and_validates(tmp_path: Path) -> None:
    for binary in BINARIES:
        helm_bin(binary)
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(render, MATRIX))
    render_seconds = time.monotonic() - started
    failures: list[str] = []
    files = []
    for i, (cfg, out, err) in enumerate(results):
        label = ",".join(f"{k}={v}" for k, v in cfg.items())
        if err:
            failures.append(f"{label}: {err.strip()[:300]}")
            continue
        docs = [d for d in yaml.safe_load_all(out) if d]
        assert any(d["kind"] in {"Deployment", "StatefulSet", "Cluster"} for d in docs) or (
            cfg["registry"] == cfg["tot"] == "off"
        )
        for problem in [*name_problems(docs), *references(docs), *crd_problems(docs), *openshift_problems(cfg, docs)]:
            failures.append(f"{label}: {problem}")
        path = tmp_path / f"config-{i}.yaml"
        path.write_text(out)
        files.append(str(path))
    assert not failures, "\n".join(failures[:20])
    exe = Path(sys.executable).with_name("kubernetes-validate")
    started_validation = time.monotonic()
    proc = subprocess.run(
        [str(exe), "--strict", "--quiet", "--no-warn", "-k", "1.33.0", *files],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    print(
        f"{len(MATRIX)} configurations rendered in {render_seconds:.1f} s (4 threads), "
        f"kubernetes-validate --strict in {time.monotonic() - started_validation:.1f} s"
    )


@pytest.mark.parametrize("cfg", [MATRIX[0]], ids=["example"])
def test_helm_args_are_what_the_levels_say(cfg: dict[str, str]) -> None:
    args = helm_args({**cfg, "database": "external-secret", "routing": "both"})
    assert "database.external.existingSecret=db" in args
    assert "ingress.enabled=true" in args and "gateway.enabled=true" in args
