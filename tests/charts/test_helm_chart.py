"""Behaviour of the Helm charts (charts/mcp-platform and its subcharts), checked offline.

Every values file is rendered once per Helm binary (.tools/bin/helm = Helm 4, .tools/bin/helm3 =
Helm 3; install both with `python scripts/install_helm.py`), with and without the CRD API versions,
and the rendered objects are checked for behaviour: security baseline, probes, autoscaling, PDBs,
RBAC, NetworkPolicies, database wiring, alerts and runbooks, Kubernetes and CRD schema validity.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "mcp-platform"
VALUES = {
    "default": None,
    "staging": REPO / "values" / "staging.yaml",
    "prod": REPO / "values" / "prod.yaml",
    # chart-testing's values files (ct install in CI)
    "ci-embedded": CHART / "ci" / "embedded-values.yaml",
    "ci-cloudnativepg": CHART / "ci" / "cloudnativepg-values.yaml",
}
BINARIES = {"helm4": REPO / ".tools" / "bin" / "helm", "helm3": REPO / ".tools" / "bin" / "helm3"}
CRD_SCHEMAS = Path(__file__).parent / "crd-schemas"  # vendored from datreeio/CRDs-catalog (MIT, see LICENSE)
RUNBOOKS = REPO / "docs" / "runbooks"
RELEASE = "mcp"
NAMESPACE = "mcp-test"
API_VERSIONS = [
    "--api-versions",
    "monitoring.coreos.com/v1",
    "--api-versions",
    "cert-manager.io/v1",
    "--api-versions",
    "postgresql.cnpg.io/v1",
    "--api-versions",
    "gateway.networking.k8s.io/v1",
    "--kube-version",
    "1.33.0",
]
CRD_GROUPS = ("monitoring.coreos.com", "cert-manager.io", "postgresql.cnpg.io", "gateway.networking.k8s.io")
POD_KINDS = {"Deployment", "StatefulSet", "Job", "CronJob", "Pod", "DaemonSet", "ReplicaSet"}
APPS = {"tool-registry": 8000, "tree-of-thoughts": 8001}

Docs = list[dict[str, Any]]


# --------------------------------------------------------------------------------------------- helpers
def helm_bin(name: str) -> Path:
    path = BINARIES[name]
    if not path.exists():
        msg = f"{path} is missing: run `python scripts/install_helm.py`"
        print(msg)
        pytest.skip(msg)
    return path


def run_helm(binary: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=120, check=False)


def template_args(values: str | None, *extra: str) -> list[str]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    if values and VALUES[values]:
        args += ["-f", str(VALUES[values])]
    return [*args, *extra]


def render(binary: Path, values: str | None = None, *extra: str) -> Docs:
    proc = run_helm(binary, *template_args(values, *extra))
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def render_fails(binary: Path, values: str | None = None, *extra: str) -> str:
    proc = run_helm(binary, *template_args(values, *extra))
    assert proc.returncode != 0, f"expected helm template to fail with {extra}"
    return proc.stderr


def find(docs: Docs, kind: str, name: str | None = None) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs: Docs, kind: str, name: str) -> dict[str, Any]:
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def pod_spec(doc: dict[str, Any]) -> dict[str, Any]:
    if doc["kind"] == "Pod":
        return doc["spec"]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return doc["spec"]["template"]["spec"]


def pod_labels(doc: dict[str, Any]) -> dict[str, str]:
    if doc["kind"] == "Pod":
        return doc["metadata"]["labels"]
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return doc["spec"]["template"]["metadata"]["labels"]


def containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return [*spec.get("initContainers", []), *spec["containers"]]


def env_of(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container.get("env", [])}


def app_deployment(docs: Docs, app: str) -> dict[str, Any]:
    return one(docs, "Deployment", f"{RELEASE}-{app}")


# --------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def rendered() -> Iterator[dict[tuple[str, str, bool], Docs]]:
    """{(binary, values, with_crd_apis): docs}, rendered once for the whole module."""
    cache: dict[tuple[str, str, bool], Docs] = {}
    yield cache


@pytest.fixture(params=list(BINARIES))
def helm(request: pytest.FixtureRequest) -> Path:
    return helm_bin(request.param)


def get(rendered: dict[tuple[str, str, bool], Docs], binary: str, values: str, full: bool) -> Docs:
    key = (binary, values, full)
    if key not in rendered:
        rendered[key] = render(helm_bin(binary), values, *(API_VERSIONS if full else []))
    return rendered[key]


# Every optional feature at once (on top of prod), to validate objects no values file enables.
KITCHEN_SINK = [
    "-f", str(VALUES["prod"]),
    "--set", "gateway.enabled=true",
    "--set", "tool-registry.canary.enabled=true",
    "--set", "tree-of-thoughts.blueGreen.enabled=true",
    "--set", "tls.selfSigned=true",
    "--set", "resourceQuota.enabled=true",
    "--set", "limitRange.enabled=true",
    *API_VERSIONS,
]  # fmt: skip


@pytest.fixture(scope="module")
def kitchen_sink() -> Docs:
    docs = render(helm_bin("helm4"), None, *KITCHEN_SINK)
    kinds = {d["kind"] for d in docs}
    assert {"HTTPRoute", "Issuer", "ResourceQuota", "LimitRange", "Pooler", "ScheduledBackup"} <= kinds
    return docs


CASES = [(b, v, f) for b in BINARIES for v in VALUES for f in (False, True)]
CASE_IDS = [f"{b}-{v}-{'crds' if f else 'plain'}" for b, v, f in CASES]


@pytest.fixture(params=CASES, ids=CASE_IDS)
def docs(request: pytest.FixtureRequest, rendered: dict[tuple[str, str, bool], Docs]) -> Docs:
    binary, values, full = request.param
    return get(rendered, binary, values, full)


@pytest.fixture(params=[c for c in CASES if c[2]], ids=[i for c, i in zip(CASES, CASE_IDS, strict=True) if c[2]])
def full_docs(request: pytest.FixtureRequest, rendered: dict[tuple[str, str, bool], Docs]) -> Docs:
    binary, values, _ = request.param
    return get(rendered, binary, values, True)


# --------------------------------------------------------------------------------------------- lint and schema
@pytest.mark.parametrize("values", list(VALUES))
def test_helm_lint_strict(helm: Path, values: str) -> None:
    args = ["lint", "--strict", str(CHART)]
    if VALUES[values]:
        args += ["-f", str(VALUES[values])]
    proc = run_helm(helm, *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_subcharts_are_used_unpacked_without_dependency_build(helm: Path) -> None:
    proc = run_helm(helm, "dependency", "list", str(CHART))
    assert proc.returncode == 0, proc.stderr
    rows = [line.split() for line in proc.stdout.splitlines()[1:] if line.strip()]
    assert {r[0] for r in rows} == {"mcp-common", "tool-registry", "tree-of-thoughts", "pgvector"}
    assert all(r[-1] == "unpacked" for r in rows), proc.stdout


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "unknownKey=1"], "unknownKey"),
        (["--set", "database.bogus=1"], "bogus"),
        (["--set", "tool-registry.config.notASetting=1"], "notASetting"),
        (["--set", "tree-of-thoughts.keyStore.type=vault"], "keyStore"),
        (["--set", "tool-registry.replicaCount=many"], "replicaCount"),
        (["--set-string", "pgvector.persistence.retain=yes"], "retain"),
        (["--set", "database.mode=sqlite"], "mode"),
        (["--set", "tool-registry.podDisruptionBudget.maxUnavailable=0"], "maxUnavailable"),
        (["--set", "tree-of-thoughts.podDisruptionBudget.maxUnavailable=0%"], "maxUnavailable"),
        (["--set", "database.cloudnativepg.pooler.poolMode=transaction"], "poolMode"),
    ],
    ids=[
        "root-unknown",
        "nested-unknown",
        "subchart-unknown",
        "subchart-enum",
        "wrong-type",
        "wrong-type-bool",
        "enum",
        "pdb-blocks-drains",
        "pdb-blocks-drains-percent",
        "transaction-pooling",
    ],
)
def test_schema_rejects_bad_values(helm: Path, extra: list[str], message: str) -> None:
    assert message in render_fails(helm, None, *extra)


def test_schema_allows_global(helm: Path) -> None:
    render(helm, None, "--set", "global.somethingShared=1")


def test_schemas_are_strict_everywhere() -> None:
    """additionalProperties: false on every object that declares properties (root allows `global`)."""
    for path in CHART.rglob("values.schema.json"):
        schema = json.loads(path.read_text())
        assert "global" in schema["properties"], path

        def walk(node: Any, where: str, schema_path: Path = path) -> None:
            if isinstance(node, dict):
                if "properties" in node and where != "/global":
                    assert node.get("additionalProperties") is False, f"{schema_path}: {where}"
                for key, child in node.get("properties", {}).items():
                    walk(child, f"{where}/{key}")
                if isinstance(node.get("items"), dict):
                    walk(node["items"], f"{where}[]")

        walk(schema, "")


# --------------------------------------------------------------------------------------------- security
def test_security_baseline_on_every_pod_spec(docs: Docs) -> None:
    pods = [d for d in docs if d["kind"] in POD_KINDS]
    assert pods
    for doc in pods:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        spec = pod_spec(doc)
        psc = spec["securityContext"]
        assert psc["runAsNonRoot"] is True, where
        uid = 999 if "pgvector" in doc["metadata"]["name"] else 1001
        assert (psc["runAsUser"], psc["runAsGroup"], psc["fsGroup"]) == (uid, uid, uid), where
        assert psc["seccompProfile"]["type"] == "RuntimeDefault", where
        tmp_volumes = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
        for c in containers(spec):
            csc = c["securityContext"]
            assert csc["readOnlyRootFilesystem"] is True, where
            assert csc["allowPrivilegeEscalation"] is False, where
            assert csc["capabilities"]["drop"] == ["ALL"], where
            assert c["resources"]["limits"]["memory"] and c["resources"]["requests"]["cpu"], where
            tmp = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
            assert tmp and tmp[0]["name"] in tmp_volumes, f"{where}: /tmp must be an emptyDir"
        assert not spec.get("hostNetwork") and not spec.get("hostPID"), where


def test_service_accounts_and_tokens(docs: Docs) -> None:
    sas = {d["metadata"]["name"]: d for d in find(docs, "ServiceAccount")}
    assert sas[f"{RELEASE}-tool-registry"]["automountServiceAccountToken"] is False
    assert sas[f"{RELEASE}-tree-of-thoughts"]["automountServiceAccountToken"] is True  # keyStore kubernetes
    for doc in docs:
        if doc["kind"] in POD_KINDS:
            spec = pod_spec(doc)
            if spec.get("serviceAccountName") not in {f"{RELEASE}-tree-of-thoughts", CREDENTIALS_JOB}:
                assert spec["automountServiceAccountToken"] is False, doc["metadata"]["name"]


CREDENTIALS_JOB = f"{RELEASE}-mcp-platform-db-credentials"


def is_hook(doc: dict[str, Any]) -> bool:
    return "helm.sh/hook" in (doc["metadata"].get("annotations") or {})


def test_rbac_is_exactly_the_key_secret(docs: Docs) -> None:
    roles = [r for r in find(docs, "Role") if not is_hook(r)]  # the credentials hook's: the next test
    assert not find(docs, "ClusterRole") and not find(docs, "ClusterRoleBinding")
    assert len(roles) == 1
    key_secret = f"{RELEASE}-tree-of-thoughts-keys"
    assert roles[0]["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [key_secret],
            "verbs": ["get", "patch"],  # exactly what issuer/stores.py calls: read, then a guarded merge patch
        }
    ]
    binding = one(docs, "RoleBinding", roles[0]["metadata"]["name"])
    assert binding["roleRef"]["name"] == roles[0]["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": f"{RELEASE}-tree-of-thoughts", "namespace": NAMESPACE}
    ]
    secret = one(docs, "Secret", key_secret)
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert "data" not in secret or not secret["data"]
    cm = one(docs, "ConfigMap", f"{RELEASE}-tree-of-thoughts")
    assert cm["data"]["KEY_SECRET_NAME"] == key_secret and cm["data"]["KEY_STORE"] == "kubernetes"


def test_the_database_credentials_hook_can_only_create_and_keep_its_secrets(docs: Docs) -> None:
    """database.generatePasswords: a hook Job writes the passwords in the cluster (tests/tot/test_credentials.py
    runs its command against the Secrets API double); no rendered object carries one."""
    hooks = [d for d in docs if "credentials" in d["metadata"]["name"]]
    cnpg = any(d["kind"] == "Cluster" for d in docs)
    if not hooks:  # modes without generated passwords
        assert not any(
            d["kind"] == "Secret"
            and d["metadata"]["name"] == f"{RELEASE}-database"
            and "password" in (d.get("data") or {})
            for d in docs
        )
        return
    policies = any(d["kind"] == "NetworkPolicy" and d["metadata"]["name"].endswith("default-deny") for d in docs)
    assert {d["kind"] for d in hooks} == {"ServiceAccount", "Role", "RoleBinding", "Job"} | (
        {"NetworkPolicy"} if policies else set()
    )
    if policies:  # default-deny exists before an upgrade's hooks: the Job's own egress to the API, as a hook
        (egress,) = one(docs, "NetworkPolicy", CREDENTIALS_JOB)["spec"]["egress"]
        assert {p["port"] for p in egress["ports"]} == {443, 6443}
    for d in hooks:
        annotations = d["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
        assert int(annotations["helm.sh/hook-weight"]) < 0  # before the migrations hook (weight 0)
    names = [f"{RELEASE}-database", *([f"{RELEASE}-db-app-credentials"] if cnpg else [])]
    deployments = sorted(d["metadata"]["name"] for d in find(docs, "Deployment"))
    assert one(docs, "Role", CREDENTIALS_JOB)["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": names, "verbs": ["get", "update"]},
        # the Secret's checksum on the pod templates: a changed Secret rolls the apps
        {"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": deployments, "verbs": ["patch"]},
    ]
    job = one(docs, "Job", CREDENTIALS_JOB)
    (container,) = pod_spec(job)["containers"]
    assert container["image"].split("/")[-1].startswith("tree-of-thoughts:")
    assert container["args"][:4] == ["credentials", "ensure", "--secret", f"{RELEASE}-database"]
    assert credentials_args(docs)["--restart-deployment"] == deployments
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert f"{RELEASE}-database" not in {d["metadata"]["name"] for d in find(docs, "Secret")}
    assert not any("password" in (d.get("data") or {}) for d in find(docs, "Secret"))


def test_file_key_store_has_no_api_access() -> None:
    docs = render(helm_bin("helm4"), None, "--set", "tree-of-thoughts.keyStore.type=file")
    assert not [d for d in find(docs, "Role") + find(docs, "RoleBinding") if not is_hook(d)]
    assert one(docs, "ServiceAccount", f"{RELEASE}-tree-of-thoughts")["automountServiceAccountToken"] is False
    assert pod_spec(app_deployment(docs, "tree-of-thoughts"))["automountServiceAccountToken"] is False
    err = render_fails(
        helm_bin("helm4"),
        None,
        "--set",
        "tree-of-thoughts.keyStore.type=file",
        "--set",
        "tree-of-thoughts.replicaCount=2",
    )
    assert "keyStore.type kubernetes" in err


# --------------------------------------------------------------------------------------------- workloads
def test_app_containers_ports_probes_and_lifecycle(docs: Docs) -> None:
    for app, port in APPS.items():
        dep = app_deployment(docs, app)
        spec = pod_spec(dep)
        (c,) = spec["containers"]
        assert c["args"] == ["serve"] and "command" not in c
        assert c["image"].startswith(f"ghcr.io/mcp-platform/{app}:")
        assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": port, "metrics": 8080}
        for probe, path in (("startupProbe", "/health"), ("livenessProbe", "/health"), ("readinessProbe", "/ready")):
            assert c[probe]["httpGet"] == {"path": path, "port": "http"}, (app, probe)
        thresholds = {
            p: (c[p]["periodSeconds"], c[p]["failureThreshold"])
            for p in ("startupProbe", "livenessProbe", "readinessProbe")
        }
        assert len(set(thresholds.values())) == 3, f"{app}: probes need different thresholds"
        sleep = c["lifecycle"]["preStop"]["exec"]["command"]
        assert sleep[0] == "sleep"
        assert spec["terminationGracePeriodSeconds"] > int(sleep[1])
        svc = one(docs, "Service", f"{RELEASE}-{app}")
        assert {p["name"]: (p["port"], p["targetPort"]) for p in svc["spec"]["ports"]} == {
            "http": (port, "http"),
            "metrics": (8080, "metrics"),
        }
        assert dep["spec"]["selector"]["matchLabels"] == {
            "app.kubernetes.io/name": app,
            "app.kubernetes.io/instance": RELEASE,
            "track": "stable",
        }
        anno = dep["spec"]["template"]["metadata"]["annotations"]
        assert re.fullmatch(r"[0-9a-f]{64}", anno["checksum/config"])
        assert re.fullmatch(r"[0-9a-f]{64}", anno["checksum/secret"])
        spread = spec["topologySpreadConstraints"][0]
        assert spread["topologyKey"] == "kubernetes.io/hostname"
        assert spread["whenUnsatisfiable"] == "ScheduleAnyway"


def test_labels_on_every_object(docs: Docs) -> None:
    required = {
        "app.kubernetes.io/name",
        "app.kubernetes.io/instance",
        "app.kubernetes.io/version",
        "app.kubernetes.io/component",
        "app.kubernetes.io/part-of",
        "app.kubernetes.io/managed-by",
        "helm.sh/chart",
    }
    for doc in docs:
        missing = required - set(doc["metadata"].get("labels", {}))
        assert not missing, f"{doc['kind']}/{doc['metadata']['name']}: {missing}"
        if doc["kind"] in POD_KINDS:
            assert pod_labels(doc)["app.kubernetes.io/instance"] == RELEASE


EXPECTED_CONFIG = {
    "both": {
        "HOST",
        "PORT",
        "METRICS_PORT",
        "WORKERS",
        "LOG_LEVEL",
        "DATABASE_POOL_MAX",
        "DATA_DIR",
        "AUTH_MODE",
        "AUTH_JWKS_URL",
        "AUTH_ISSUER",
        "AUTH_AUDIENCE",
        "CORS_ORIGINS",
        "RATE_LIMIT_PER_MINUTE",
        "MAX_REQUEST_BYTES",
        "MCP_ALLOWED_HOSTS",
        "FORWARDED_ALLOW_IPS",
    },
    "tool-registry": {
        "PUBLIC_URL",
        "EMBEDDING_PROVIDER",
        "EMBEDDING_ENDPOINT_URL",
        "EMBEDDING_MODEL",
        "EMBEDDING_DIMENSION",
        "ENABLE_CACHE",
        "UPSTREAM_ALLOWED_HOSTS",
        "UPSTREAM_SYNC_INTERVAL_SECONDS",
    },
    "tree-of-thoughts": {
        "LLM_BASE_URL",
        "LLM_MODEL",
        "MAX_THOUGHTS_DEPTH",
        "EVALUATION_STRATEGY",
        "JWT_EXPIRATION_HOURS",
        "JWKS_CACHE_MAX_AGE",
        "KEY_ROTATION_HOURS",
        "KEY_OVERLAP_HOURS",
        "KEY_STORE",
        "KEY_SECRET_NAME",
        "ISSUER_URL",
        "RUN_TTL_HOURS",
    },
}
SECRET_ENV = {"DATABASE_URL", "DATABASE_READ_URL", "EMBEDDING_API_KEY", "API_KEYS", "LLM_API_KEY", "OAUTH_CLIENTS"}


def test_environment_contract(docs: Docs) -> None:
    for app, port in APPS.items():
        cm = one(docs, "ConfigMap", f"{RELEASE}-{app}")["data"]
        assert EXPECTED_CONFIG["both"] | EXPECTED_CONFIG[app] <= set(cm), app
        assert not SECRET_ENV & set(cm), f"{app}: secrets in the ConfigMap"
        assert cm["HOST"] == "0.0.0.0" and cm["PORT"] == str(port) and cm["METRICS_PORT"] == "8080"  # noqa: S104
        assert cm["DATA_DIR"].startswith("/tmp/")
        assert cm["AUTH_MODE"] == "jwt" and cm["AUTH_AUDIENCE"] == app  # each service only its own tokens
        # The registry fetches the issuer's JWKS in-cluster; the issuer verifies with its own keys in-process.
        jwks = f"http://{RELEASE}-tree-of-thoughts:8001/.well-known/jwks.json" if app == "tool-registry" else ""
        assert cm["AUTH_JWKS_URL"] == jwks
        hosts = cm["MCP_ALLOWED_HOSTS"].split(",")
        assert f"{RELEASE}-{app}.{NAMESPACE}.svc.cluster.local:{port}" in hosts
        assert f"{RELEASE}-{app}:{port}" in hosts
        (c,) = pod_spec(app_deployment(docs, app))["containers"]
        env = env_of(c)
        ref = env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]
        assert ref["key"] == "DATABASE_URL"
        assert {"configMapRef": {"name": f"{RELEASE}-{app}"}} in c["envFrom"]
    reg = one(docs, "ConfigMap", f"{RELEASE}-tool-registry")["data"]
    tot = one(docs, "ConfigMap", f"{RELEASE}-tree-of-thoughts")["data"]
    assert reg["AUTH_ISSUER"] == tot["ISSUER_URL"] == tot["AUTH_ISSUER"]
    # The registry names its public URL itself (never a request's Host); both trust the pod network's proxies.
    assert reg["PUBLIC_URL"] == "https://" + reg["MCP_ALLOWED_HOSTS"].split(",")[0]  # the public host comes first
    assert reg["FORWARDED_ALLOW_IPS"] == tot["FORWARDED_ALLOW_IPS"] == "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16"
    assert reg["MAX_REQUEST_BYTES"] == "16777216" and tot["MAX_REQUEST_BYTES"] == "1048576"
    assert reg["EMBEDDING_MODEL"] == "all-MiniLM-L6-v2" and reg["EMBEDDING_DIMENSION"] == "384"
    overlap, lifetime, cache = (
        float(tot["KEY_OVERLAP_HOURS"]),
        float(tot["JWT_EXPIRATION_HOURS"]),
        float(tot["JWKS_CACHE_MAX_AGE"]),
    )
    assert overlap >= lifetime + cache / 3600
    (tot_c,) = pod_spec(app_deployment(docs, "tree-of-thoughts"))["containers"]
    assert env_of(tot_c)["KEY_SECRET_NAMESPACE"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}


def test_staging_public_hosts_in_allowed_hosts(rendered: dict[tuple[str, str, bool], Docs]) -> None:
    docs = get(rendered, "helm4", "staging", False)
    reg = one(docs, "ConfigMap", f"{RELEASE}-tool-registry")["data"]
    assert "registry.staging.example.com" in reg["MCP_ALLOWED_HOSTS"].split(",")
    assert reg["AUTH_ISSUER"] == "https://tot.staging.example.com"
    tot_secret = one(docs, "Secret", f"{RELEASE}-tree-of-thoughts")
    # No client is committed (tests/charts/test_committed_secrets.py renders one given at install).
    assert json.loads(__import__("base64").b64decode(tot_secret["data"]["OAUTH_CLIENTS"])) == []


def test_key_overlap_guard() -> None:
    err = render_fails(helm_bin("helm4"), None, "--set", "tree-of-thoughts.config.keyOverlapHours=10")
    assert "keyOverlapHours" in err


def test_checksums_follow_config_and_secret_changes() -> None:
    helm = helm_bin("helm4")

    def annotations(*extra: str) -> dict[str, dict[str, str]]:
        docs = render(helm, None, *extra)
        return {app: app_deployment(docs, app)["spec"]["template"]["metadata"]["annotations"] for app in APPS}

    base = annotations()
    assert base == annotations(), "checksums must be deterministic"
    cfg = annotations("--set", "tool-registry.config.logLevel=DEBUG")
    assert cfg["tool-registry"]["checksum/config"] != base["tool-registry"]["checksum/config"]
    assert cfg["tool-registry"]["checksum/secret"] == base["tool-registry"]["checksum/secret"]
    assert cfg["tree-of-thoughts"] == base["tree-of-thoughts"]
    sec = annotations("--set", "tool-registry.secrets.embeddingApiKey=sk-test")
    assert sec["tool-registry"]["checksum/secret"] != base["tool-registry"]["checksum/secret"]
    assert sec["tool-registry"]["checksum/config"] == base["tool-registry"]["checksum/config"]
    tot = annotations("--set", "tree-of-thoughts.secrets.llmApiKey=sk-test")
    assert tot["tree-of-thoughts"]["checksum/secret"] != base["tree-of-thoughts"]["checksum/secret"]


# --------------------------------------------------------------------------------------------- scaling
def test_hpa_and_replicas(rendered: dict[tuple[str, str, bool], Docs]) -> None:
    for binary in BINARIES:
        prod = get(rendered, binary, "prod", False)
        bounds = {"tool-registry": (2, 50), "tree-of-thoughts": (1, 5)}
        for app, (lo, hi) in bounds.items():
            assert "replicas" not in app_deployment(prod, app)["spec"], f"{app}: replicas must be omitted with an HPA"
            hpa = one(prod, "HorizontalPodAutoscaler", f"{RELEASE}-{app}")
            assert hpa["apiVersion"] == "autoscaling/v2"
            assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (lo, hi)
            assert hpa["spec"]["scaleTargetRef"] == {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": f"{RELEASE}-{app}",
            }
            targets = {
                m["resource"]["name"]: m["resource"]["target"]["averageUtilization"] for m in hpa["spec"]["metrics"]
            }
            assert targets == {"cpu": 70, "memory": 80}
            assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
            assert hpa["spec"]["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 30
        staging = get(rendered, binary, "staging", False)
        assert not find(staging, "HorizontalPodAutoscaler")
        assert app_deployment(staging, "tool-registry")["spec"]["replicas"] == 2
        assert app_deployment(staging, "tree-of-thoughts")["spec"]["replicas"] == 1


def test_pdb_only_when_it_cannot_block_a_drain(rendered: dict[tuple[str, str, bool], Docs]) -> None:
    def pdbs(docs: Docs) -> dict[str, dict[str, Any]]:
        return {d["metadata"]["name"]: d["spec"] for d in find(docs, "PodDisruptionBudget")}

    for values, expected in (
        ("staging", {"tool-registry"}),
        ("prod", {"tool-registry"}),
        ("default", {"tool-registry"}),
    ):
        got = pdbs(get(rendered, "helm4", values, False))
        assert set(got) == {f"{RELEASE}-{a}" for a in expected}, values
        for spec in got.values():
            assert spec["maxUnavailable"] == 1 and "minAvailable" not in spec
    docs = render(
        helm_bin("helm4"),
        "prod",
        "--set",
        "tree-of-thoughts.autoscaling.minReplicas=2",
        "--set",
        "tool-registry.autoscaling.minReplicas=1",
    )
    assert set(pdbs(docs)) == {f"{RELEASE}-tree-of-thoughts"}


# --------------------------------------------------------------------------------------------- database
def db_ref(docs: Docs, app: str) -> dict[str, Any]:
    (c,) = pod_spec(app_deployment(docs, app))["containers"]
    return env_of(c)["DATABASE_URL"]["valueFrom"]["secretKeyRef"]


def secret_value(doc: dict[str, Any], key: str) -> str:
    import base64

    return base64.b64decode(doc["data"][key]).decode()


def test_embedded_mode(rendered: dict[tuple[str, str, bool], Docs]) -> None:
    docs = get(rendered, "helm4", "staging", True)
    args = credentials_args(docs)
    assert args["--secret"] == [f"{RELEASE}-database"]
    assert args["--password-key"] == ["password", "postgres-password"]
    assert f"DATABASE_URL=postgresql://mcp@{RELEASE}-pgvector.{NAMESPACE}.svc:5432/mcp" in args["--url"]
    for app in APPS:
        assert db_ref(docs, app) == {"name": f"{RELEASE}-database", "key": "DATABASE_URL"}
    sts = one(docs, "StatefulSet", f"{RELEASE}-pgvector")
    (pg,) = pod_spec(sts)["containers"]
    assert pg["image"] == "pgvector/pgvector:pg17"
    assert env_of(pg)["PGDATA"]["value"].startswith("/var/lib/postgresql/data/")
    assert env_of(pg)["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": f"{RELEASE}-database",
        "key": "postgres-password",
    }
    mounts = {m["mountPath"] for m in pg["volumeMounts"]}
    assert {"/var/run/postgresql", "/tmp", "/var/lib/postgresql/data", "/docker-entrypoint-initdb.d"} <= mounts
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert pg[probe]["exec"]["command"][0] == "pg_isready"
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    initdb = one(docs, "ConfigMap", f"{RELEASE}-pgvector-initdb")
    assert "CREATE EXTENSION IF NOT EXISTS vector" in "".join(initdb["data"].values())
    assert {s["metadata"]["name"] for s in find(docs, "Service") if "pgvector" in s["metadata"]["name"]} == {
        f"{RELEASE}-pgvector",
        f"{RELEASE}-pgvector-headless",
    }
    assert one(docs, "Service", f"{RELEASE}-pgvector-headless")["spec"]["clusterIP"] == "None"
    # Backups: pg_dump CronJob into a kept PVC.
    cron = one(docs, "CronJob", f"{RELEASE}-pgvector-backup")
    assert "pg_dump" in pod_spec(cron)["containers"][0]["args"][0]
    pvc = one(docs, "PersistentVolumeClaim", f"{RELEASE}-pgvector-backups")
    assert pvc["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    # First install: no pre-install migration hook (the database does not exist yet).
    job = one(docs, "Job", f"{RELEASE}-tool-registry-migrate")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-upgrade"
    assert not find(docs, "Cluster")


def credentials_args(docs: Docs) -> dict[str, list[str]]:
    """The options the database-credentials hook Job passes to `tot credentials ensure`, by flag."""
    argv = pod_spec(one(docs, "Job", CREDENTIALS_JOB))["containers"][0]["args"]
    assert argv[:2] == ["credentials", "ensure"]
    options: dict[str, list[str]] = {}
    for flag, value in zip(argv[2::2], argv[3::2], strict=True):
        options.setdefault(flag, []).append(value)
    return options


def test_cloudnativepg_mode(rendered: dict[tuple[str, str, bool], Docs]) -> None:
    for full in (False, True):
        docs = get(rendered, "helm4", "prod", full)
        assert not find(docs, "StatefulSet")
        cluster = one(docs, "Cluster", f"{RELEASE}-db")
        assert cluster["spec"]["instances"] == 3
        assert (
            "CREATE EXTENSION IF NOT EXISTS vector" in cluster["spec"]["bootstrap"]["initdb"]["postInitApplicationSQL"]
        )
        creds = cluster["spec"]["bootstrap"]["initdb"]["secret"]["name"]
        # The credentials hook writes CNPG's initdb secret with the same password as the URLs.
        args = credentials_args(docs)
        assert args["--basic-auth-secret"] == [creds] and args["--password-key"] == ["password"]
        pooler = one(docs, "Pooler", f"{RELEASE}-db-pooler-rw")
        assert pooler["spec"]["type"] == "rw" and pooler["spec"]["cluster"]["name"] == f"{RELEASE}-db"
        backup = one(docs, "ScheduledBackup", f"{RELEASE}-db-scheduled")
        assert backup["spec"]["cluster"]["name"] == f"{RELEASE}-db"
        urls = dict(u.split("=", 1) for u in args["--url"])
        assert f"mcp@{RELEASE}-db-pooler-rw.{NAMESPACE}.svc:5432/mcp" in urls["DATABASE_URL"]
        assert f"mcp@{RELEASE}-db-ro.{NAMESPACE}.svc:5432/mcp" in urls["DATABASE_READ_URL"]
        assert f"mcp@{RELEASE}-db-rw.{NAMESPACE}.svc:5432/mcp" in urls["DATABASE_DIRECT_URL"]
        for app in APPS:
            assert db_ref(docs, app) == {"name": f"{RELEASE}-database", "key": "DATABASE_URL"}
        (reg,) = pod_spec(app_deployment(docs, "tool-registry"))["containers"]
        assert env_of(reg)["DATABASE_READ_URL"]["valueFrom"]["secretKeyRef"]["name"] == f"{RELEASE}-database"
        job = one(docs, "Job", f"{RELEASE}-tool-registry-migrate")
        assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-upgrade"
        assert (
            env_of(pod_spec(job)["containers"][0])["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"]
            == "DATABASE_DIRECT_URL"
        )


EXTERNAL = ["--set", "database.mode=external", "--set", "pgvector.enabled=false"]


def test_external_mode_with_existing_secret() -> None:
    helm = helm_bin("helm4")
    docs = render(
        helm,
        None,
        *EXTERNAL,
        "--set",
        "database.external.existingSecret=pg-url",
        "--set",
        "tool-registry.database.secretName=pg-url",
        "--set",
        "tree-of-thoughts.database.secretName=pg-url",
    )
    assert not find(docs, "Secret", f"{RELEASE}-database") and not find(docs, "StatefulSet")
    for app in APPS:
        assert db_ref(docs, app) == {"name": "pg-url", "key": "DATABASE_URL"}
    job = one(docs, "Job", f"{RELEASE}-tool-registry-migrate")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert "before-hook-creation" in job["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    assert "hook-succeeded" in job["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    (c,) = pod_spec(job)["containers"]
    assert c["args"] == ["migrate"] and c["image"].startswith("ghcr.io/mcp-platform/tool-registry:")
    assert env_of(c)["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "pg-url", "key": "DATABASE_URL"}
    # Subcharts cannot read parent values: a mismatch fails with instructions.
    err = render_fails(helm, None, *EXTERNAL, "--set", "database.external.existingSecret=pg-url")
    assert "tool-registry.database.secretName=pg-url" in err
    assert "database.external.existingSecret" in render_fails(helm, None, *EXTERNAL)


def test_external_mode_with_url_secret_is_a_pre_install_hook() -> None:
    docs = render(helm_bin("helm4"), None, *EXTERNAL, "--set", "database.external.url=postgresql://u:p@db:5432/mcp")
    secret = one(docs, "Secret", f"{RELEASE}-database")
    anno = secret["metadata"]["annotations"]
    job = one(docs, "Job", f"{RELEASE}-tool-registry-migrate")
    assert "pre-install" in anno["helm.sh/hook"] and anno["helm.sh/resource-policy"] == "keep"
    assert int(anno["helm.sh/hook-weight"]) < int(job["metadata"]["annotations"]["helm.sh/hook-weight"])
    assert secret_value(secret, "DATABASE_URL") == "postgresql://u:p@db:5432/mcp"


def test_mode_and_subchart_must_agree() -> None:
    assert "pgvector.enabled=false" in render_fails(helm_bin("helm4"), None, "--set", "database.mode=cloudnativepg")


# --------------------------------------------------------------------------------------------- network
def test_networkpolicy_default_deny_and_flows(rendered: dict[tuple[str, str, bool], Docs]) -> None:
    docs = get(rendered, "helm4", "prod", True)
    policies = {p["metadata"]["name"]: p["spec"] for p in find(docs, "NetworkPolicy")}
    deny = policies[f"{RELEASE}-mcp-platform-default-deny"]
    assert deny["podSelector"] == {"matchLabels": {"app.kubernetes.io/instance": RELEASE}}
    assert sorted(deny["policyTypes"]) == ["Egress", "Ingress"]
    assert not deny.get("ingress") and not deny.get("egress")
    for doc in docs:
        if doc["kind"] in POD_KINDS:
            assert pod_labels(doc)["app.kubernetes.io/instance"] == RELEASE
    for app in APPS:
        spec = policies[f"{RELEASE}-{app}"]
        by_port = {r["ports"][0]["port"]: r["from"] for r in spec["ingress"]}
        assert set(by_port) == {"http", "metrics"}
        assert by_port["metrics"][0]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "prometheus"}
    tot_egress = policies[f"{RELEASE}-tree-of-thoughts"]["egress"]
    assert any(r["to"][0].get("ipBlock", {}).get("cidr") == "10.0.0.0/8" for r in tot_egress)
    reg_egress = policies[f"{RELEASE}-tool-registry"]["egress"]
    assert any(
        r["to"][0].get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name") == "tree-of-thoughts"
        for r in reg_egress
    )
    db = policies[f"{RELEASE}-mcp-platform-database-clients"]
    assert [t["podSelector"]["matchLabels"] for t in db["egress"][0]["to"]] == [
        {"cnpg.io/cluster": f"{RELEASE}-db"},
        {"cnpg.io/poolerName": f"{RELEASE}-db-pooler-rw"},
    ]
    dns = policies[f"{RELEASE}-mcp-platform-dns"]["egress"][0]["ports"]
    assert {(p["port"], p["protocol"]) for p in dns} == {(53, "UDP"), (53, "TCP")}


def test_routes_use_one_host_per_app_and_never_metrics(rendered: dict[tuple[str, str, bool], Docs]) -> None:
    docs = get(rendered, "helm4", "prod", True)
    (ing,) = find(docs, "Ingress")
    rules = {r["host"]: r["http"]["paths"] for r in ing["spec"]["rules"]}
    assert set(rules) == {"registry.example.com", "tot.example.com"}
    reg_paths = {p["path"]: p["backend"]["service"] for p in rules["registry.example.com"]}
    tot_paths = {p["path"]: p["backend"]["service"] for p in rules["tot.example.com"]}
    assert {"/mcp", "/api", "/health"} <= set(reg_paths) and {"/mcp", "/oauth", "/.well-known", "/health"} <= set(
        tot_paths
    )
    assert "/ready" not in reg_paths and "/ready" not in tot_paths  # readiness names failing dependencies
    assert all(s == {"name": f"{RELEASE}-tool-registry", "port": {"name": "http"}} for s in reg_paths.values())
    assert all(s == {"name": f"{RELEASE}-tree-of-thoughts", "port": {"name": "http"}} for s in tot_paths.values())
    cert = one(docs, "Certificate", f"{RELEASE}-mcp-platform")
    assert cert["spec"]["issuerRef"] == {
        "name": "letsencrypt-prod",
        "kind": "ClusterIssuer",
        "group": "cert-manager.io",
    }
    assert sorted(cert["spec"]["dnsNames"]) == ["registry.example.com", "tot.example.com"]
    assert ing["spec"]["tls"][0]["secretName"] == cert["spec"]["secretName"]
    assert "8080" not in yaml.safe_dump(ing) and "metrics" not in yaml.safe_dump(ing)


def test_canary_weights_and_blue_green() -> None:
    helm = helm_bin("helm4")
    docs = render(
        helm,
        None,
        "--set",
        "gateway.enabled=true",
        "--set",
        "tool-registry.canary.enabled=true",
        "--set",
        "tool-registry.canary.tag=0.2.0",
        "--set",
        "tool-registry.canary.weight=20",
        "--api-versions",
        "gateway.networking.k8s.io/v1",
    )
    canary = app_deployment(docs, "tool-registry-canary")
    assert canary["spec"]["replicas"] == 1
    assert pod_spec(canary)["containers"][0]["image"].endswith(":0.2.0")
    assert one(docs, "Service", f"{RELEASE}-tool-registry-canary")["spec"]["selector"]["track"] == "canary"
    assert one(docs, "Service", f"{RELEASE}-tool-registry")["spec"]["selector"]["track"] == "stable"
    route = one(docs, "HTTPRoute", f"{RELEASE}-tool-registry")
    refs = {r["name"]: r["weight"] for r in route["spec"]["rules"][0]["backendRefs"]}
    assert refs == {f"{RELEASE}-tool-registry": 80, f"{RELEASE}-tool-registry-canary": 20}
    assert route["spec"]["hostnames"] == ["registry.example.com"]
    assert {"type": "PathPrefix", "value": "/health"} in [m["path"] for m in route["spec"]["rules"][0]["matches"]]

    for active, idle in (("blue", "green"), ("green", "blue")):
        docs = render(
            helm,
            None,
            "--set",
            "tree-of-thoughts.blueGreen.enabled=true",
            "--set",
            f"tree-of-thoughts.blueGreen.activeTrack={active}",
            "--set",
            "tree-of-thoughts.blueGreen.greenTag=0.2.0",
        )
        deps = {
            d["metadata"]["name"]: d for d in find(docs, "Deployment") if "tree-of-thoughts" in d["metadata"]["name"]
        }
        assert set(deps) == {f"{RELEASE}-tree-of-thoughts-blue", f"{RELEASE}-tree-of-thoughts-green"}
        assert deps[f"{RELEASE}-tree-of-thoughts-green"]["spec"]["template"]["spec"]["containers"][0]["image"].endswith(
            ":0.2.0"
        )
        assert one(docs, "Service", f"{RELEASE}-tree-of-thoughts")["spec"]["selector"]["track"] == active
        assert deps[f"{RELEASE}-tree-of-thoughts-{idle}"]["spec"]["template"]["metadata"]["labels"]["track"] == idle
    assert "mutually exclusive" in render_fails(
        helm, None, "--set", "tool-registry.canary.enabled=true", "--set", "tool-registry.blueGreen.enabled=true"
    )


# --------------------------------------------------------------------------------------------- CRDs and monitoring
def test_crd_kinds_are_gated_by_capabilities(rendered: dict[tuple[str, str, bool], Docs]) -> None:
    for binary in BINARIES:
        plain = get(rendered, binary, "prod", False)
        full = get(rendered, binary, "prod", True)
        for kind in ("ServiceMonitor", "PrometheusRule", "Certificate"):
            assert not find(plain, kind), f"{kind} rendered without its API"
            assert find(full, kind), f"{kind} missing with its API"
        # The CNPG Cluster is the database itself in this mode: rendered regardless (install fails loudly).
        assert find(plain, "Cluster") and find(full, "Cluster")
        dash = find(full, "ConfigMap", f"{RELEASE}-mcp-platform-dashboard")[0]
        assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
        json.loads(next(iter(dash["data"].values())))
        monitors = find(full, "ServiceMonitor")
        assert {m["spec"]["endpoints"][0]["port"] for m in monitors} == {"metrics"}
        assert len(monitors) == 2


ALLOWED_METRICS = {
    "mcp_http_requests_total",
    "mcp_http_request_duration_seconds",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "up",
    "mcp_jwt_key_created_timestamp",
    "mcp_jwt_key_store_last_success_timestamp",
    "mcp_database_up",
    "registry_embedding_errors_total",
    "registry_upstream_sync_failures_total",
    "registry_upstream_last_sync_success_timestamp",
}
PROMQL_WORDS = {
    "sum",
    "by",
    "rate",
    "increase",
    "histogram_quantile",
    "max",
    "min",
    "time",
    "or",
    "and",
    "unless",
    "le",
    "job",
    "pod",
    "namespace",
    "container",
    "resource",
    "status",
    "absent",
    "on",
    "ignoring",
    "group_left",
    "avg",
    "count",
    "without",
    "irate",
    "instance",
    "app_kubernetes_io_instance",
    "cpu",
    "memory",
}


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"[^"]*"', '""', expr)  # drop label values
    expr = re.sub(r"\{[^}]*\}", "", expr)  # drop label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # drop range selectors
    words = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {w for w in words if w not in PROMQL_WORDS}


@pytest.mark.parametrize("binary", list(BINARIES))
def test_alerts_have_runbooks_and_known_metrics(rendered: dict[tuple[str, str, bool], Docs], binary: str) -> None:
    rules = find(get(rendered, binary, "prod", True), "PrometheusRule")
    assert len(rules) == 1
    alerts = [r for g in rules[0]["spec"]["groups"] for r in g["rules"] if "alert" in r]
    names = {a["alert"] for a in alerts}
    assert {
        # The names of the hand-written manifests operators migrate from (routes and silences match them).
        "MCPServerDown",
        "MCPHighErrorRate",
        "McpHighLatency",
        "MCPHighCPUUsage",
        "MCPHighMemoryUsage",
        "MCPJWTKeyRotationDue",
        "McpDatabaseUnreachable",
        "RegistryEmbeddingErrors",
        "RegistryUpstreamSyncFailing",
    } <= names
    base = "https://github.com/mcp-platform/mcp-platform/blob/main/docs/runbooks/"
    for alert in alerts:
        url = alert["annotations"]["runbook_url"]
        assert url == f"{base}{alert['alert']}.md"
        runbook = RUNBOOKS / f"{alert['alert']}.md"
        assert runbook.is_file(), f"missing {runbook}"
        text = runbook.read_text()
        assert all(h in text for h in ("## Meaning", "## Impact", "## Diagnosis", "## Mitigation")), runbook
        assert alert["labels"]["severity"] in {"critical", "warning"}
        for name in metric_names(alert["expr"]):
            known = name in ALLOWED_METRICS or re.sub(r"_(bucket|sum|count)$", "", name) in ALLOWED_METRICS
            assert known or name.startswith(("kube_", "container_")), f"{alert['alert']}: unknown metric {name}"


def test_runbook_base_url_is_configurable() -> None:
    docs = render(
        helm_bin("helm4"),
        None,
        "--set",
        "monitoring.rules.enabled=true",
        "--set",
        "monitoring.rules.runbookBaseUrl=https://runbooks.internal/mcp/",
        "--api-versions",
        "monitoring.coreos.com/v1",
    )
    (rule,) = find(docs, "PrometheusRule")
    urls = {r["annotations"]["runbook_url"] for g in rule["spec"]["groups"] for r in g["rules"]}
    assert all(
        u.startswith(("https://runbooks.internal/mcp/Mcp", "https://runbooks.internal/mcp/MCP"))
        or u.startswith("https://runbooks.internal/mcp/Reg")
        for u in urls
    )


def crd_schema(doc: dict[str, Any]) -> Path | None:
    group, _, version = doc["apiVersion"].rpartition("/")
    if group not in CRD_GROUPS:
        return None
    return CRD_SCHEMAS / group / f"{doc['kind'].lower()}_{version}.json"


def test_crd_objects_match_their_schemas_all_features(kitchen_sink: Docs) -> None:
    test_crd_objects_match_their_schemas(kitchen_sink)


def test_crd_objects_match_their_schemas(full_docs: Docs) -> None:
    checked = 0
    for doc in full_docs:
        path = crd_schema(doc)
        if path is None:
            continue
        assert path.is_file(), f"no schema for {doc['apiVersion']} {doc['kind']}"
        schema = json.loads(path.read_text())
        validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)(schema)
        errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
        assert not errors, f"{doc['kind']}/{doc['metadata']['name']}: " + "; ".join(
            f"{list(e.path)}: {e.message[:200]}" for e in errors[:5]
        )
        checked += 1
    assert checked or not any(doc["apiVersion"].split("/")[0] in CRD_GROUPS for doc in full_docs)


def test_kubernetes_validate_strict(
    rendered: dict[tuple[str, str, bool], Docs], kitchen_sink: Docs, tmp_path: Path
) -> None:
    (tmp_path / "kitchen-sink.yaml").write_text(yaml.safe_dump_all(kitchen_sink))
    files = [str(tmp_path / "kitchen-sink.yaml")]
    for binary in BINARIES:
        for values in VALUES:
            for full in (False, True):
                path = tmp_path / f"{binary}-{values}-{full}.yaml"
                path.write_text(yaml.safe_dump_all(get(rendered, binary, values, full)))
                files.append(str(path))
    exe = Path(sys.executable).with_name("kubernetes-validate")
    cmd = [str(exe)] if exe.exists() else [shutil.which("uv") or "uv", "run", "kubernetes-validate"]
    proc = subprocess.run(
        [*cmd, "--strict", "--quiet", "--no-warn", "-k", "1.33.0", *files],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_helm_test_hook(docs: Docs) -> None:
    pods = find(docs, "Pod")
    assert len(pods) == 1
    pod = pods[0]
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    env = env_of(pod["spec"]["containers"][0])
    assert env["REGISTRY_URL"]["value"] == f"http://{RELEASE}-tool-registry:8000"
    assert env["TOT_URL"]["value"] == f"http://{RELEASE}-tree-of-thoughts:8001"
    script = one(docs, "ConfigMap", f"{RELEASE}-mcp-platform-test")["data"]["smoke_test.py"]
    for needle in ("/ready", "/oauth/token", '"initialize"', "/mcp"):
        assert needle in script
    compile(script, "smoke_test.py", "exec")


# --------------------------------------------------------------------------------------------- documentation
def leaf_paths(node: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(node, dict) and node:
        for key, child in node.items():
            yield from leaf_paths(child, f"{prefix}{key}.")
    else:
        yield prefix.rstrip(".")


@pytest.mark.parametrize(
    ("values_file", "prefix"),
    [
        ("values.yaml", ""),
        *((f"charts/{c}/values.yaml", f"{c}.") for c in ("tool-registry", "tree-of-thoughts", "pgvector")),
    ],
)
def test_every_value_is_documented(values_file: str, prefix: str) -> None:
    """Each value has a `# --` comment in values.yaml and a row (itself or a parent) in the chart README."""
    readme = (CHART / "README.md").read_text()
    rows = set(re.findall(r"^\| `([^`]+)` \|", readme, flags=re.MULTILINE))
    values = yaml.safe_load((CHART / values_file).read_text())
    undocumented = []
    for path in leaf_paths(values):
        if prefix == "" and path.split(".")[0] in APPS | {"pgvector": 0}:
            continue  # the subcharts' own tables document these
        parts = (prefix + path).split(".")
        if not any(".".join(parts[:i]) in rows for i in range(len(parts), 0, -1)):
            undocumented.append(prefix + path)
    assert not undocumented, (
        f"undocumented values (add a `# --` comment and regenerate the README table): {undocumented}"
    )


def test_ci_workflow_copies_are_identical() -> None:
    """GitHub runs .github/workflows/ci.yaml; ci/workflows/chart.yaml is its owned source."""
    source = REPO / "ci" / "workflows" / "chart.yaml"
    assert source.read_text() == (REPO / ".github" / "workflows" / "ci.yaml").read_text()
    workflow = yaml.safe_load(source.read_text())
    steps = " ".join(
        str(s.get("run", "")) + str(s.get("uses", "")) for j in workflow["jobs"].values() for s in j["steps"]
    )
    for needle in (
        "ct lint --config ct.yaml",
        "ct install --config ct.yaml",
        "helm/kind-action",
        "kind load docker-image",
        "Dockerfile.registry",
        "Dockerfile.tot",
        "helm test",
    ):
        assert needle in steps, needle
    ct = yaml.safe_load((REPO / "ct.yaml").read_text())
    assert ct["chart-dirs"] == ["charts"] and ct["target-branch"] == "main" and ct["validate-maintainers"] is False
    assert sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))


def notes(helm: Path, *extra: str) -> str:
    proc = run_helm(helm, "install", RELEASE, str(CHART), "--namespace", NAMESPACE, "--dry-run=client", *extra)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split("NOTES:", 1)[1]


def test_notes_warn_about_insecure_choices_and_missing_crds() -> None:
    """Helm 4 renders NOTES offline with `install --dry-run=client` (Helm 3 wants a cluster for it)."""
    helm = helm_bin("helm4")
    text = notes(helm, "--set", "tool-registry.config.auth.mode=none",
                 "--set", "tool-registry.config.auth.allowNoneOnNetwork=true", "--set", "ingress.enabled=true",
                 "--set", "ingress.tls=false", "--set", "tool-registry.serviceMonitor.enabled=true")  # fmt: skip
    assert "AUTH_MODE=none" in text
    assert "without TLS" in text
    assert "database.mode=embedded" in text
    assert "monitoring.coreos.com/v1" in text and "NOT created" in text
    prod = notes(helm, "-f", str(VALUES["prod"]))
    assert "https://registry.example.com/mcp" in prod
    assert "AUTH_MODE=none" not in prod and "database.mode=embedded" not in prod and "without TLS" not in prod
    assert "cert-manager.io/v1" in prod  # no CRDs offline: the skipped Certificate is reported


@pytest.mark.parametrize("app", ["tool-registry", "tree-of-thoughts"])
def test_auth_none_needs_an_explicit_acceptance(helm: Path, app: str) -> None:
    """Pods listen on 0.0.0.0, where the apps refuse AUTH_MODE=none: the chart says so at render, not a crash loop."""
    err = render_fails(helm, None, "--set", f"{app}.config.auth.mode=none")
    assert f"set {app}.config.auth.allowNoneOnNetwork=true" in err
    docs = render(
        helm, None, "--set", f"{app}.config.auth.mode=none", "--set", f"{app}.config.auth.allowNoneOnNetwork=true"
    )
    data = one(docs, "ConfigMap", f"{RELEASE}-{app}")["data"]
    assert (data["AUTH_MODE"], data["AUTH_NONE_ALLOW_NON_LOOPBACK"]) == ("none", "true")
    default = one(render(helm), "ConfigMap", f"{RELEASE}-{app}")["data"]
    assert (default["AUTH_MODE"], default["AUTH_NONE_ALLOW_NON_LOOPBACK"]) == ("jwt", "false")


@pytest.mark.parametrize(
    ("limits", "explicit", "expected"),
    [
        # docs/search.md: shared_buffers M/4, effective_cache_size 3M/4, maintenance_work_mem M/8 (64MB-2GB),
        # work_mem M/(4 x max_connections) (4-64MB), parallel maintenance workers = CPUs - 1.
        ({"memory": "1Gi", "cpu": "1"}, {}, ["256MB", "768MB", "128MB", "4MB", "0"]),
        ({"memory": "8Gi", "cpu": "4"}, {}, ["2048MB", "6144MB", "1024MB", "10MB", "3"]),
        ({"memory": "64Gi", "cpu": "2500m"}, {"work_mem": "8MB"}, ["16384MB", "49152MB", "2048MB", "8MB", "1"]),
        ({"memory": "1536M", "cpu": "500m"}, {"shared_buffers": "100MB"}, ["100MB", "1098MB", "183MB", "4MB", "0"]),
    ],
)
def test_postgres_memory_follows_the_pods_limits(
    limits: dict[str, str], explicit: dict[str, str], expected: list[str]
) -> None:
    names = [
        "shared_buffers",
        "effective_cache_size",
        "maintenance_work_mem",
        "work_mem",
        "max_parallel_maintenance_workers",
    ]
    args = [f"--set-string=pgvector.resources.limits.{k}={v}" for k, v in limits.items()]
    args += [f"--set-string=pgvector.postgresqlParameters.{k}={v}" for k, v in explicit.items()]
    docs = render(helm_bin("helm4"), None, *args)
    (pg,) = pod_spec(one(docs, "StatefulSet", f"{RELEASE}-pgvector"))["containers"]
    settings = dict(a.split("=", 1) for a in pg["args"][2::2])
    assert [settings[n] for n in names] == expected
    assert settings["max_connections"] == "200"
    shm = next(v for v in pod_spec(one(docs, "StatefulSet", f"{RELEASE}-pgvector"))["volumes"] if v["name"] == "shm")
    assert int(shm["emptyDir"]["sizeLimit"].removesuffix("Mi")) == max(256, int(expected[2].removesuffix("MB")) + 64)
    # The CloudNativePG Cluster gets the same rule from its own limits.
    cnpg = render(
        helm_bin("helm4"),
        "prod",
        *[
            a.replace("pgvector.resources", "database.cloudnativepg.resources").replace(
                "pgvector.postgresqlParameters", "database.cloudnativepg.parameters"
            )
            for a in args
        ],
    )
    parameters = one(cnpg, "Cluster", f"{RELEASE}-db")["spec"]["postgresql"]["parameters"]
    cnpg_expected = {
        **dict(zip(names, expected, strict=True)),
        "work_mem": parameters["work_mem"],
    }  # max_connections 400
    assert {n: parameters[n] for n in names} == cnpg_expected
    assert all(isinstance(v, str) for v in parameters.values())  # the CRD wants strings
