"""The chart on day two: generated names within Kubernetes' limits for any release name Helm accepts.

Rendered offline with both Helm binaries (see test_helm_chart.py); each render is a subprocess, so the
renders of a test run in a thread pool.
"""

from __future__ import annotations

import itertools
import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.test_helm_chart import API_VERSIONS, BINARIES, CHART, REPO, VALUES, helm_bin, pod_labels

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
            if not spec.get("rules") and not spec.get("defaultBackend"):
                missing.append(f"Ingress {d['metadata']['name']} has neither rules nor defaultBackend")
            for rule in spec.get("rules") or []:
                for p in rule["http"]["paths"]:
                    svc = p["backend"]["service"]["name"]
                    missing += [] if ("Service", svc) in names else [f"ingress {svc}"]
        if d["kind"] == "StatefulSet" and ("Service", spec["serviceName"]) not in names:
            missing.append(f"serviceName {spec['serviceName']}")
        if d["kind"] == "Role":
            # The credentials Job rolls exactly the apps' Deployments (every track): no more, no fewer.
            for rule in d["rules"]:
                if "deployments" in rule["resources"]:
                    deployments = {n for k, n in names if k == "Deployment"}
                    if set(rule["resourceNames"]) != deployments:
                        missing.append(
                            f"Role {d['metadata']['name']} patches {rule['resourceNames']}, not {deployments}"
                        )
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
            jobs = sorted(d["metadata"]["name"] for d in docs if d["kind"] == "Job")
            assert len(jobs) == 2 and jobs[0].endswith("-db-credentials") and jobs[1].endswith("-migrate"), jobs


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


# --------------------------------------------------------------------------------------------- safety checks
def secret_data(docs: Docs, name: str) -> dict[str, str]:
    import base64

    secret = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == name)
    return {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}


def database_urls(docs: Docs) -> dict[str, str]:
    """The URL keys of "mcp-database": as rendered (generatePasswords false), else as the credentials hook Job
    is told to write them (password-free here; the Job adds the generated password)."""
    if any(d["kind"] == "Secret" and d["metadata"]["name"] == "mcp-database" for d in docs):
        return {k: v for k, v in secret_data(docs, "mcp-database").items() if k.endswith("_URL")}
    job = next(d for d in docs if d["kind"] == "Job" and d["metadata"]["name"].endswith("-db-credentials"))
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    return dict(value.split("=", 1) for flag, value in itertools.pairwise(args) if flag == "--url")


def helm_fails(*args: str) -> str:
    cmd = [str(helm_bin("helm4")), "template", "mcp", str(CHART), "--namespace", NAMESPACE, *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0, f"expected a failure with {args}"
    return proc.stderr


def app_name(doc: dict[str, Any]) -> str:
    return str(doc["metadata"].get("labels", {}).get("app.kubernetes.io/name"))


def test_registry_finds_the_tree_of_thoughts_service_it_really_has() -> None:
    for release in ("mcp", LONG_RELEASE):
        docs = helm_template(helm_bin("helm4"), release, "--set", "global.hosts.treeOfThoughts=")
        tot = next(d for d in docs if d["kind"] == "Service" and app_name(d) == "tree-of-thoughts")
        port = tot["spec"]["ports"][0]["port"]
        cm = next(d for d in docs if d["kind"] == "ConfigMap" and app_name(d) == "tool-registry")
        base = f"http://{tot['metadata']['name']}:{port}"
        assert cm["data"]["AUTH_JWKS_URL"] == f"{base}/.well-known/jwks.json"
        assert cm["data"]["AUTH_ISSUER"] == base
    err = helm_fails("--set", "tree-of-thoughts.fullnameOverride=thoughts")
    assert "set tool-registry.config.auth.jwksUrl=http://thoughts:8001/.well-known/jwks.json" in err
    err = helm_fails("--set", "tree-of-thoughts.service.port=9000")
    assert "mcp-tree-of-thoughts:9000/.well-known/jwks.json" in err
    helm_template(
        helm_bin("helm4"),
        "mcp",
        *("--set", "tree-of-thoughts.fullnameOverride=thoughts"),
        *("--set", "tool-registry.config.auth.jwksUrl=http://thoughts:8001/.well-known/jwks.json"),
    )


def test_connection_budget_is_checked_at_render_time() -> None:
    prod = ["-f", str(VALUES["prod"])]
    helm_template(helm_bin("helm4"), "mcp", *prod)  # prod fits: 50 x 2 x 2 + 5 x 1 x 10 = 250
    err = helm_fails(*prod, "--set", "tool-registry.config.databasePoolMax=5")
    assert "550 connections" in err and "max_connections=400" in err
    assert "tool-registry 50 pods x 2 workers x 5 databasePoolMax = 500" in err
    err = helm_fails(*prod, "--set-string", "database.cloudnativepg.pooler.parameters.default_pool_size=100")
    assert "default_pool_size=100" in err and "250 connections" in err
    # Blue-green counts both tracks at full size: 2 x 5 x 1 x 10 = 100 more.
    err = helm_fails(
        *prod, "--set", "tree-of-thoughts.blueGreen.enabled=true", "--set", "tool-registry.config.workers=3"
    )
    assert "tree-of-thoughts 10 pods" in err


def test_cloudnativepg_read_url_only_with_replicas() -> None:
    cnpg = ["-f", str(VALUES["ci-cloudnativepg"])]
    one_instance = database_urls(
        helm_template(helm_bin("helm4"), "mcp", *cnpg, "--set", "database.cloudnativepg.instances=1")
    )
    assert "DATABASE_READ_URL" not in one_instance  # -ro has no endpoints without a replica
    three = database_urls(helm_template(helm_bin("helm4"), "mcp", *cnpg, "--set", "database.cloudnativepg.instances=3"))
    assert "@mcp-db-ro." in three["DATABASE_READ_URL"]


def test_migrations_job_honours_the_url_key() -> None:
    docs = helm_template(
        helm_bin("helm4"),
        "mcp",
        *("--set", "database.mode=external", "--set", "pgvector.enabled=false"),
        *("--set", "database.external.existingSecret=db"),
        *("--set", "tool-registry.database.secretName=db", "--set", "tree-of-thoughts.database.secretName=db"),
        *("--set", "tool-registry.database.urlKey=uri"),
    )
    job = next(d for d in docs if d["kind"] == "Job")
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": "db", "key": "uri"}


# --------------------------------------------------------------------------------------------- GitOps
GITOPS = {
    "embedded": [
        *("--set", "database.generatePasswords=false", "--set", "pgvector.auth.existingSecret=mcp-db-credentials"),
        *("--set", "tool-registry.database.passwordSecret.name=mcp-db-credentials"),
        *("--set", "tree-of-thoughts.database.passwordSecret.name=mcp-db-credentials"),
    ],
    "cloudnativepg": [
        *("-f", str(VALUES["prod"]), "--set", "database.generatePasswords=false"),
        *("--set", "tool-registry.database.passwordSecret.name=mcp-db-app"),
        *("--set", "tree-of-thoughts.database.passwordSecret.name=mcp-db-app"),
    ],
}


def argocd_template(binary: Path, *args: str) -> str:
    """What Argo CD runs: `helm template` with the API versions, no --is-upgrade, no cluster (no lookup)."""
    cmd = [str(binary), "template", "mcp", str(CHART), "--namespace", NAMESPACE, "--include-crds", *args]
    proc = subprocess.run([*cmd, *API_VERSIONS], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def argocd_phase(doc: dict[str, Any]) -> str:
    """Argo CD's sync phase for a rendered object: its own hook annotation wins over Helm's, which it maps."""
    annotations = doc["metadata"].get("annotations") or {}
    if "argocd.argoproj.io/hook" in annotations:
        return str(annotations["argocd.argoproj.io/hook"])
    helm_hooks = set(str(annotations.get("helm.sh/hook", "")).split(",")) - {""}
    if helm_hooks & {"pre-install", "pre-upgrade"}:
        return "PreSync"
    if helm_hooks & {"post-install", "post-upgrade"}:
        return "PostSync"
    if helm_hooks == {"test"}:
        return "Skip"  # Argo CD ignores test hooks
    return "Sync"


@pytest.mark.parametrize("binary", list(BINARIES))
@pytest.mark.parametrize("mode", list(GITOPS))
def test_gitops_renders_are_reproducible_and_password_free(binary: str, mode: str) -> None:
    helm = helm_bin(binary)
    first, second = argocd_template(helm, *GITOPS[mode]), argocd_template(helm, *GITOPS[mode])
    assert first == second  # nothing random: every Argo CD sync applies the same objects
    docs = [d for d in yaml.safe_load_all(first) if d]
    password_secret = GITOPS[mode][-1].split("=", 1)[1]
    urls = secret_data(docs, "mcp-database")
    assert "password" not in urls and "postgres-password" not in urls
    assert all(":" not in urlsplit_userinfo(v) for k, v in urls.items() if k.endswith("_URL"))
    for d in docs:
        if d["kind"] in {"Deployment", "Job"} and d["metadata"]["name"].startswith(("mcp-tool", "mcp-tree")):
            env = {e["name"]: e for c in d["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
            ref = env["DATABASE_PASSWORD"]["valueFrom"]["secretKeyRef"]
            assert ref == {"name": password_secret, "key": "password"}, d["metadata"]["name"]
    if mode == "cloudnativepg":
        cluster = next(d for d in docs if d["kind"] == "Cluster")
        assert "secret" not in cluster["spec"]["bootstrap"]["initdb"]  # CNPG generates mcp-db-app
        assert not [d for d in docs if d["metadata"]["name"].endswith("-app-credentials")]
    # Argo CD phases: on the first sync nothing may need the database before it exists.
    phases = {(d["kind"], d["metadata"]["name"]): argocd_phase(d) for d in docs}
    assert phases[("Job", "mcp-tool-registry-migrate")] == "PostSync"
    assert {k for k, v in phases.items() if v == "PreSync"} == set()


@pytest.mark.parametrize("binary", list(BINARIES))
@pytest.mark.parametrize("values", ["default", "prod"])
def test_default_renders_are_reproducible_and_carry_no_password(binary: str, values: str) -> None:
    """With generated passwords (the default) no template makes one: the credentials hook Job does, in the
    cluster, before anything needs them (Argo CD's PreSync: it needs no database)."""
    helm = helm_bin(binary)
    args = [] if values == "default" else ["-f", str(VALUES["prod"])]
    first, second = argocd_template(helm, *args), argocd_template(helm, *args)
    assert first == second
    docs = [d for d in yaml.safe_load_all(first) if d]
    for secret in (d for d in docs if d["kind"] == "Secret"):
        assert not {"password", "postgres-password"} & set(secret.get("data") or {}), secret["metadata"]["name"]
    phases = {(d["kind"], d["metadata"]["name"]): argocd_phase(d) for d in docs}
    presync = {k for k, v in phases.items() if v == "PreSync"}
    kinds = ["ServiceAccount", "Role", "RoleBinding", "Job"] + (["NetworkPolicy"] if values == "prod" else [])
    assert presync == {(kind, "mcp-mcp-platform-db-credentials") for kind in kinds}
    assert phases[("Job", "mcp-tool-registry-migrate")] == "PostSync"
    urls = database_urls(docs)
    assert urls and all(":" not in urlsplit_userinfo(u) for u in urls.values())


def urlsplit_userinfo(url: str) -> str:
    return url.split("//", 1)[1].split("@", 1)[0]


def test_gitops_without_a_password_secret_stops_with_the_value_to_set() -> None:
    err = helm_fails("--set", "database.generatePasswords=false")
    assert "set pgvector.auth.existingSecret" in err
    err = helm_fails("--set", "database.generatePasswords=false", "--set", "pgvector.auth.existingSecret=creds")
    assert "set tool-registry.database.passwordSecret.name=creds (key password)" in err
    err = helm_fails("-f", str(VALUES["prod"]), "--set", "database.generatePasswords=false")
    assert "set tool-registry.database.passwordSecret.name=mcp-db-app" in err
    err = helm_fails("--set", "tool-registry.database.passwordSecret.name=x")
    assert "only used with database.generatePasswords=false" in err


def test_external_mode_migrations_stay_presync_under_argocd() -> None:
    out = argocd_template(
        helm_bin("helm4"),
        *("--set", "database.mode=external", "--set", "pgvector.enabled=false"),
        *("--set", "database.external.url=postgresql://u:p@db:5432/mcp"),
    )
    docs = [d for d in yaml.safe_load_all(out) if d]
    phases = {(d["kind"], d["metadata"]["name"]): argocd_phase(d) for d in docs}
    assert phases[("Job", "mcp-tool-registry-migrate")] == "PreSync"  # the database exists before the release
    assert phases[("Secret", "mcp-database")] == "PreSync"


# --------------------------------------------------------------------------------------------- blue-green
def replicas_and_hpas(docs: Docs, app: str) -> tuple[dict[str, int | None], set[str]]:
    deployments = {
        d["metadata"]["name"]: d["spec"].get("replicas")
        for d in docs
        if d["kind"] == "Deployment" and app_name(d) == app
    }
    hpas = {d["metadata"]["name"] for d in docs if d["kind"] == "HorizontalPodAutoscaler" and app_name(d) == app}
    return deployments, hpas


@pytest.mark.parametrize("app", ["tool-registry", "tree-of-thoughts"])
def test_blue_green_switch_keeps_the_outgoing_track_until_it_is_retired(app: str) -> None:
    base = [
        *("--set", f"{app}.blueGreen.enabled=true", "--set", f"{app}.autoscaling.enabled=true"),
        *("--set", f"{app}.autoscaling.minReplicas=3", "--set", f"{app}.autoscaling.maxReplicas=6"),
    ]
    if app == "tree-of-thoughts":
        base += ["--set", "tree-of-thoughts.keyStore.type=kubernetes"]
    blue, green = f"mcp-{app}-blue", f"mcp-{app}-green"
    steps = {
        "steady": ["--set", f"{app}.blueGreen.activeTrack=blue", "--set", f"{app}.blueGreen.retiredTracks={{green}}"],
        "both": ["--set", f"{app}.blueGreen.activeTrack=blue", "--set-json", f"{app}.blueGreen.retiredTracks=[]"],
        "switched": ["--set", f"{app}.blueGreen.activeTrack=green", "--set-json", f"{app}.blueGreen.retiredTracks=[]"],
        "retired": ["--set", f"{app}.blueGreen.activeTrack=green", "--set", f"{app}.blueGreen.retiredTracks={{blue}}"],
    }
    rendered = render_many({k: (helm_bin("helm4"), "mcp", [*base, *v]) for k, v in steps.items()})
    state = {k: replicas_and_hpas(v, app) for k, v in rendered.items()}
    # Steady: blue autoscaled, green parked at inactiveReplicas.
    assert state["steady"] == ({blue: None, green: 1}, {blue})
    # Both at full size, each with its own HPA; the switch changes the Service, not the capacity.
    assert state["both"] == state["switched"] == ({blue: None, green: None}, {blue, green})
    selector = {
        k: next(d for d in v if d["kind"] == "Service" and d["metadata"]["name"] == f"mcp-{app}")["spec"]["selector"]
        for k, v in rendered.items()
    }
    assert selector["both"]["track"] == "blue" and selector["switched"]["track"] == "green"
    # The green HPA keeps its name from "both" to "retired": no HPA is recreated by the switch.
    assert state["retired"] == ({blue: 1, green: None}, {green})
    err = helm_fails(
        *base, "--set", f"{app}.blueGreen.activeTrack=green", "--set", f"{app}.blueGreen.retiredTracks={{green}}"
    )
    assert "activeTrack green is listed in blueGreen.retiredTracks" in err


# --------------------------------------------------------------------------------------------- upgrades
# The chart as it was before the day-two changes (no release tag exists yet: the newest tag would do).
BASE_REVISION = "1c68ea28c171e07f1a7d9340209f1d18b08dbb31"


def base_revision() -> str:
    tags = subprocess.run(
        ["git", "-C", str(CHART), "tag", "--sort=-creatordate"], capture_output=True, text=True, check=False
    ).stdout.split()
    return tags[0] if tags else BASE_REVISION


@pytest.fixture(scope="module")
def previous_chart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import io
    import tarfile

    rev = base_revision()
    repo = CHART.parents[1]
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", rev, "charts/mcp-platform", "values"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        shallow = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--is-shallow-repository"],
            capture_output=True,
            text=True,
            check=False,
        )
        if shallow.stdout.strip() == "true":
            pytest.skip(f"{rev} is not in this shallow clone (fetch with --depth 0 or --unshallow)")
        pytest.fail(f"git archive {rev}: {archive.stderr.decode()[:200]}")
    target = tmp_path_factory.mktemp("previous")
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="data")
    return target / "charts" / "mcp-platform"


def immutable_fields(docs: Docs) -> dict[tuple[str, str], Any]:
    """Fields Kubernetes refuses to change in place (an upgrade would fail, or need a delete)."""
    fields: dict[tuple[str, str], Any] = {}
    for d in docs:
        kind, name, spec = d["kind"], d["metadata"]["name"], d.get("spec") or {}
        hook = "helm.sh/hook" in (d["metadata"].get("annotations") or {})
        if kind in {"Deployment", "StatefulSet", "DaemonSet"}:
            fields[(kind, name)] = {"selector": spec["selector"]}
        if kind == "StatefulSet":
            claims = [{"name": c["metadata"]["name"], "spec": c["spec"]} for c in spec.get("volumeClaimTemplates", [])]
            fields[(kind, name)].update(serviceName=spec["serviceName"], volumeClaimTemplates=claims)
        if kind == "Job" and not hook:  # hook Jobs are deleted and recreated (before-hook-creation)
            fields[(kind, name)] = {"template": spec["template"]}
        if kind == "RoleBinding":
            fields[(kind, name)] = {"roleRef": d["roleRef"]}
        if kind == "PersistentVolumeClaim":
            fields[(kind, name)] = {
                "storageClassName": spec.get("storageClassName"),
                "accessModes": spec["accessModes"],
            }
    return fields


UPGRADE_VALUES = [v for v in VALUES if v != "default"] + ["default"]


@pytest.mark.parametrize("binary", list(BINARIES))
def test_upgrade_from_the_previous_chart_changes_no_immutable_field(binary: str, previous_chart: Path) -> None:
    helm = helm_bin(binary)

    old_root = previous_chart.parents[1]

    def args(values: str, which: str = "new") -> list[str]:
        path = VALUES[values]
        if not path:
            return []
        # Today's values first; where the previous schema refuses a key added since, that revision's own file.
        return ["-f", str(old_root / path.relative_to(REPO) if which == "old-own" else path)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        jobs = {
            (values, which): pool.submit(
                subprocess.run,
                [
                    str(helm),
                    "template",
                    "mcp",
                    str(chart),
                    "--namespace",
                    NAMESPACE,
                    *args(values, which),
                    *API_VERSIONS,
                ],
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
            for values in UPGRADE_VALUES
            for which, chart in (("old", previous_chart), ("old-own", previous_chart), ("new", CHART))
        }
        results = {k: f.result() for k, f in jobs.items()}
    for values in UPGRADE_VALUES:
        old, new = results[(values, "old")], results[(values, "new")]
        if old.returncode != 0 and "schema" in old.stderr:
            old = results[(values, "old-own")]
        assert old.returncode == 0, f"{values}: the previous chart does not render: {old.stderr}"
        assert new.returncode == 0, new.stderr
        before = immutable_fields([d for d in yaml.safe_load_all(old.stdout) if d])
        after = immutable_fields([d for d in yaml.safe_load_all(new.stdout) if d])
        changed = {k: (before[k], after[k]) for k in before.keys() & after.keys() if before[k] != after[k]}
        assert changed == {}, f"{values}: immutable fields changed: {changed}"
        # A StatefulSet or PVC that disappears under its old name is data left behind.
        for kind in ("StatefulSet", "PersistentVolumeClaim"):
            lost = {k for k in before if k[0] == kind} - set(after)
            assert not lost, f"{values}: renamed or removed: {lost}"


def test_the_upgrade_check_sees_a_selector_change(previous_chart: Path) -> None:
    """The comparison above is not vacuous: a changed selector label is reported."""
    docs = helm_template(helm_bin("helm4"), "mcp")
    changed = json_copy(docs)
    for d in changed:
        if d["kind"] == "StatefulSet":
            d["spec"]["selector"]["matchLabels"]["extra"] = "x"
    before, after = immutable_fields(docs), immutable_fields(changed)
    assert [k for k in before if before[k] != after[k]] == [("StatefulSet", "mcp-pgvector")]


def json_copy(docs: Docs) -> Docs:
    import json

    copied: Docs = json.loads(json.dumps(docs))
    return copied


# --------------------------------------------------------------------------------------------- restore
def test_cloudnativepg_restore_into_a_new_cluster_through_values() -> None:
    import jsonschema

    from tests.charts.test_helm_chart import crd_schema

    prod = ["-f", str(VALUES["prod"])]
    before = helm_template(helm_bin("helm4"), "mcp", *prod, *API_VERSIONS)
    old = next(d for d in before if d["kind"] == "Cluster")
    # The Cluster survives an uninstall and a rename: a restore never deletes the database it replaces.
    assert old["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    for source in (
        ["--set", "database.cloudnativepg.recovery.backupName=mcp-db-scheduled-20261201030000"],
        [
            *("--set", "database.cloudnativepg.recovery.source=mcp-db"),
            *("--set-json", 'database.cloudnativepg.recovery.recoveryTarget={"targetTime":"2026-12-01 02:00:00+00"}'),
            "--set-json",
            'database.cloudnativepg.recovery.externalClusters=[{"name":"mcp-db","barmanObjectStore":'
            '{"destinationPath":"s3://mcp-platform-backups/prod","serverName":"mcp-db",'
            '"s3Credentials":{"accessKeyId":{"name":"mcp-backup-s3","key":"ACCESS_KEY_ID"},'
            '"secretAccessKey":{"name":"mcp-backup-s3","key":"ACCESS_SECRET_KEY"}}}}]',
        ],
    ):
        restore = [*prod, "--set", "database.cloudnativepg.clusterName=mcp-db-r1"]
        restore += ["--set", "database.cloudnativepg.recovery.enabled=true", *source]
        docs = helm_template(helm_bin("helm4"), "mcp", *restore, *API_VERSIONS)
        cluster = next(d for d in docs if d["kind"] == "Cluster")
        assert cluster["metadata"]["name"] == "mcp-db-r1"
        assert "initdb" not in cluster["spec"]["bootstrap"]
        recovery = cluster["spec"]["bootstrap"]["recovery"]
        assert recovery["owner"] == "mcp" and recovery["secret"] == {"name": "mcp-db-r1-app-credentials"}
        assert ("backup" in recovery) != ("source" in recovery)
        schema = crd_schema(cluster)
        assert schema is not None
        jsonschema.validate(cluster, json.loads(schema.read_text()))
        # The apps follow the new Cluster: same password (restored roles), new host.
        urls = database_urls(docs)
        assert "@mcp-db-r1-pooler-rw." in urls["DATABASE_URL"] and "@mcp-db-r1-rw." in urls["DATABASE_DIRECT_URL"]
        pooler = next(d for d in docs if d["kind"] == "Pooler")
        assert pooler["spec"]["cluster"]["name"] == "mcp-db-r1"
    err = helm_fails(*prod, "--set", "database.cloudnativepg.recovery.enabled=true")
    assert "needs recovery.backupName" in err


def test_prod_uses_current_cloudnativepg_fields() -> None:
    """No deprecated CNPG fields in prod: a PodMonitor instead of enablePodMonitor, the Barman Cloud plugin
    instead of the in-tree barmanObjectStore (both validated by the CRD schemas in test_helm_chart)."""
    docs = helm_template(helm_bin("helm4"), "mcp", "-f", str(VALUES["prod"]), *API_VERSIONS)
    cluster = next(d for d in docs if d["kind"] == "Cluster")
    assert "monitoring" not in cluster["spec"] and "backup" not in cluster["spec"]
    assert cluster["spec"]["plugins"] == [
        {
            "name": "barman-cloud.cloudnative-pg.io",
            "isWALArchiver": True,
            "parameters": {"barmanObjectName": "mcp-db-backups"},
        }
    ]
    store = next(d for d in docs if d["kind"] == "ObjectStore")
    assert store["apiVersion"] == "barmancloud.cnpg.io/v1" and store["metadata"]["name"] == "mcp-db-backups"
    assert store["spec"]["configuration"]["destinationPath"].startswith("s3://")
    assert store["spec"]["retentionPolicy"] == "30d"
    scheduled = next(d for d in docs if d["kind"] == "ScheduledBackup")
    assert scheduled["spec"]["method"] == "plugin"
    assert scheduled["spec"]["pluginConfiguration"] == {"name": "barman-cloud.cloudnative-pg.io"}
    monitor = next(d for d in docs if d["kind"] == "PodMonitor")
    assert monitor["metadata"]["name"] == "mcp-db-metrics"
    assert monitor["spec"]["selector"]["matchLabels"] == {"cnpg.io/cluster": "mcp-db", "cnpg.io/podRole": "instance"}
    assert "-standard-" in cluster["spec"]["imageName"]  # no Barman Cloud needed in the operand image
    # Without the Prometheus Operator API the PodMonitor is skipped, the database is not.
    plain = helm_template(helm_bin("helm4"), "mcp", "-f", str(VALUES["prod"]))
    assert not [d for d in plain if d["kind"] == "PodMonitor"] and [d for d in plain if d["kind"] == "Cluster"]
    err = helm_fails("-f", str(VALUES["prod"]), "--set-json", "database.cloudnativepg.backup.objectStore={}")
    assert "backup.objectStore is required with backup.method=plugin" in err


# --------------------------------------------------------------------------------------------- the library chart
POD_KINDS = {"Deployment", "StatefulSet", "Job", "CronJob", "Pod"}
# Every pod of the platform is built by mcp-common.podSpec.
LIBRARY_PODS = POD_KINDS


def pod_specs(docs: Docs) -> dict[tuple[str, str], dict[str, Any]]:
    specs = {}
    for d in docs:
        if d["kind"] in LIBRARY_PODS:
            if d["kind"] == "Pod":
                spec = d["spec"]
            elif d["kind"] == "CronJob":
                spec = d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            else:
                spec = d["spec"]["template"]["spec"]
            specs[(d["kind"], d["metadata"]["name"])] = spec
    return specs


EVERY_POD = ["--set", "pgvector.backup.enabled=true", "--set", "tests.enabled=true"]


@pytest.mark.parametrize("binary", list(BINARIES))
def test_openshift_mode_sets_no_fixed_uid_or_gid(binary: str) -> None:
    helm = helm_bin(binary)
    rendered = render_many(
        {
            "auto-openshift": (helm, "mcp", [*EVERY_POD, "--api-versions", "security.openshift.io/v1"]),
            "force": (helm, "mcp", [*EVERY_POD, "--set", "global.compatibility.openshift.adaptSecurityContext=force"]),
            "auto-elsewhere": (helm, "mcp", EVERY_POD),
            "disabled-openshift": (
                helm,
                "mcp",
                [
                    *EVERY_POD,
                    *("--api-versions", "security.openshift.io/v1"),
                    *("--set", "global.compatibility.openshift.adaptSecurityContext=disabled"),
                ],
            ),
        }
    )
    fixed = ("runAsUser", "runAsGroup", "fsGroup")
    for case, docs in rendered.items():
        specs = pod_specs(docs)
        assert {k for k, _ in specs} == LIBRARY_PODS, case
        for name, spec in specs.items():
            contexts = [spec.get("securityContext") or {}] + [
                c.get("securityContext") or {} for c in [*spec.get("initContainers", []), *spec["containers"]]
            ]
            has_fixed = any(k in ctx for ctx in contexts for k in fixed)
            assert has_fixed == case.endswith(("elsewhere", "disabled-openshift")), (case, name)
            # The rest of the baseline stays: non-root, seccomp, no privilege escalation, read-only root.
            assert spec["securityContext"]["runAsNonRoot"] is True, (case, name)
            assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            main = spec["containers"][0]["securityContext"]
            assert main["allowPrivilegeEscalation"] is False and main["readOnlyRootFilesystem"] is True


def test_global_registry_pull_secrets_and_common_labels_reach_every_pod() -> None:
    docs = helm_template(
        helm_bin("helm4"),
        "mcp",
        *EVERY_POD,
        *("--set", "global.imageRegistry=mirror.example.com:5000"),
        *("--set", "global.imagePullSecrets={mirror-pull}", "--set", "pgvector.imagePullSecrets[0].name=pg-pull"),
        *("--set", "global.commonLabels.team=platform", "--set", "global.commonAnnotations.owner=sre"),
    )
    specs = pod_specs(docs)
    for name, spec in specs.items():
        for c in spec["containers"]:
            assert c["image"].startswith("mirror.example.com:5000/"), (name, c["image"])
        assert {"name": "mirror-pull"} in spec["imagePullSecrets"], name
    images = {c["image"] for s in specs.values() for c in s["containers"]}
    assert "mirror.example.com:5000/pgvector/pgvector:pg17" in images  # prefixed (Docker Hub has no host part)
    assert "mirror.example.com:5000/mcp-platform/tool-registry:0.1.0" in images  # ghcr.io replaced
    assert specs[("StatefulSet", "mcp-pgvector")]["imagePullSecrets"] == [{"name": "mirror-pull"}, {"name": "pg-pull"}]
    for d in docs:
        assert d["metadata"]["labels"]["team"] == "platform", (d["kind"], d["metadata"]["name"])
    for d in docs:
        if d["kind"] in {"Deployment", "StatefulSet", "Job"} & LIBRARY_PODS:
            assert d["spec"]["template"]["metadata"]["annotations"]["owner"] == "sre", d["metadata"]["name"]
            # Selectors never carry the common labels (they are immutable).
            assert "team" not in str(d["spec"].get("selector", ""))
    test_pod = next(d for d in docs if d["kind"] == "Pod")
    assert test_pod["metadata"]["annotations"]["owner"] == "sre"
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"


def test_jobs_and_the_test_pod_run_where_their_app_runs() -> None:
    """The migrations Job and the helm test pod take the registry's scheduling values, the backup CronJob
    the database's; none of them takes sidecars or init containers (a sidecar would keep a Job running)."""
    toleration = '{"key":"dedicated","operator":"Equal","value":"mcp","effect":"NoSchedule"}'
    docs = helm_template(
        helm_bin("helm4"),
        "mcp",
        *EVERY_POD,
        *("--set", "tool-registry.nodeSelector.pool=apps", "--set-json", f"tool-registry.tolerations=[{toleration}]"),
        *("--set", "tool-registry.priorityClassName=mcp-high"),
        *("--set", "pgvector.nodeSelector.pool=db", "--set-json", f"pgvector.tolerations=[{toleration}]"),
        *("--set-json", 'pgvector.sidecars=[{"name":"exporter","image":"exporter:1"}]'),
    )
    specs = pod_specs(docs)
    for name in [("Job", "mcp-tool-registry-migrate"), ("Pod", "mcp-mcp-platform-test")]:
        assert specs[name]["nodeSelector"] == {"pool": "apps"} and specs[name]["priorityClassName"] == "mcp-high"
        assert specs[name]["tolerations"][0]["key"] == "dedicated"
    backup = specs[("CronJob", "mcp-pgvector-backup")]
    assert backup["nodeSelector"] == {"pool": "db"} and [c["name"] for c in backup["containers"]] == ["pg-dump"]
    database = specs[("StatefulSet", "mcp-pgvector")]
    assert [c["name"] for c in database["containers"]] == ["postgresql", "exporter"]


def test_resource_alerts_find_the_pods_of_a_long_release() -> None:
    """The CPU/memory alerts select pods by name: the regex follows the Deployments' real (cut) names."""
    import re

    docs = helm_template(helm_bin("helm4"), LONG_RELEASE, "-f", str(VALUES["prod"]), *API_VERSIONS)
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    exprs = [
        r["expr"] for g in rule["spec"]["groups"] for r in g["rules"] if "container_cpu_usage" in r.get("expr", "")
    ]
    pattern = re.search(r'pod=~"([^"]+)"', exprs[0])
    assert pattern is not None
    for d in docs:
        if d["kind"] == "Deployment":
            assert re.fullmatch(pattern.group(1), f"{d['metadata']['name']}-5d8f7c9b4-x2x7k"), d["metadata"]["name"]


def test_an_existing_secret_and_inline_credentials_are_refused_together() -> None:
    cases = {
        "tool-registry.secrets.existingSecret is set": [
            *("--set", "tool-registry.secrets.existingSecret=reg", "--set", "tool-registry.secrets.embeddingApiKey=k")
        ],
        "tree-of-thoughts.secrets.existingSecret is set": [
            *("--set", "tree-of-thoughts.secrets.existingSecret=tot", "--set", "tree-of-thoughts.secrets.llmApiKey=k")
        ],
        "tests.oauth.existingSecret is set": [
            *("--set", "tests.oauth.existingSecret=t", "--set", "tests.oauth.clientSecret=s")
        ],
        "set existingSecret or url, not both": [
            *("--set", "database.mode=external", "--set", "pgvector.enabled=false", *EXTERNAL_BOTH)
        ],
    }
    for message, args in cases.items():
        assert message in helm_fails(*args)


EXTERNAL_BOTH = [
    *("--set", "database.external.existingSecret=db", "--set", "database.external.url=postgresql://u:p@h/d"),
    *("--set", "tool-registry.database.secretName=db", "--set", "tree-of-thoughts.database.secretName=db"),
]


def test_app_pods_take_extra_volumes_env_init_containers_and_sidecars() -> None:
    sidecar = '[{"name":"proxy","image":"proxy:1","securityContext":{"runAsNonRoot":true}}]'
    docs = helm_template(
        helm_bin("helm4"),
        "mcp",
        *("--set", "tree-of-thoughts.keyStore.type=kubernetes"),
        *("--set-json", 'tool-registry.extraVolumes=[{"name":"ca","configMap":{"name":"corp-ca"}}]'),
        *("--set-json", 'tool-registry.extraVolumeMounts=[{"name":"ca","mountPath":"/etc/ssl/corp"}]'),
        *("--set-json", 'tool-registry.extraEnvFrom=[{"configMapRef":{"name":"proxy-env"}}]'),
        *("--set-json", 'tool-registry.initContainers=[{"name":"wait","image":"busybox:1"}]'),
        *("--set-json", f"tree-of-thoughts.sidecars={sidecar}"),
        *("--set", "tool-registry.automountServiceAccountToken=true"),
        *(
            "--set-json",
            'tool-registry.topologySpreadConstraints=[{"maxSkew":1,"topologyKey":"zone",'
            '"whenUnsatisfiable":"DoNotSchedule"}]',
        ),
    )
    specs = pod_specs(docs)
    reg = specs[("Deployment", "mcp-tool-registry")]
    main = reg["containers"][0]
    assert {"name": "ca", "mountPath": "/etc/ssl/corp"} in main["volumeMounts"]
    assert {"name": "ca", "configMap": {"name": "corp-ca"}} in reg["volumes"]
    assert {"configMapRef": {"name": "proxy-env"}} in main["envFrom"]
    assert [c["name"] for c in reg["initContainers"]] == ["wait"]
    assert reg["automountServiceAccountToken"] is True
    assert [c["topologyKey"] for c in reg["topologySpreadConstraints"]] == ["kubernetes.io/hostname", "zone"]
    tot = specs[("Deployment", "mcp-tree-of-thoughts")]
    assert [c["name"] for c in tot["containers"]] == ["tree-of-thoughts", "proxy"]
    assert tot["automountServiceAccountToken"] is True  # the kubernetes key store needs the token
    # Jobs take none of the registry's extras (a sidecar or init container there would hang or slow them).
    job = specs[("Job", "mcp-tool-registry-migrate")]
    assert "initContainers" not in job and len(job["containers"]) == 1
    assert [v["name"] for v in job["volumes"]] == ["tmp"]


@pytest.mark.parametrize("subchart", ["tool-registry", "tree-of-thoughts", "pgvector"])
def test_each_subchart_renders_on_its_own_with_the_library(subchart: str, tmp_path: Path) -> None:
    """A subchart declares mcp-common (file://../mcp-common): `helm dependency build` is all it needs."""
    import shutil

    for name in (subchart, "mcp-common"):
        shutil.copytree(CHART / "charts" / name, tmp_path / name)
    helm = str(helm_bin("helm4"))
    build = subprocess.run([helm, "dependency", "build", str(tmp_path / subchart)], capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    args = ["--set", "database.secretName=db"] if subchart != "pgvector" else ["--set", "auth.existingSecret=db"]
    proc = subprocess.run([helm, "template", "x", str(tmp_path / subchart), *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    if subchart == "pgvector":  # it renders no password: without the Secret's name it says which value to set
        bare = subprocess.run([helm, "template", "x", str(tmp_path / subchart)], capture_output=True, text=True)
        assert bare.returncode != 0 and "pgvector.auth.existingSecret is required" in bare.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(proc.stdout) if d}
    assert kinds & {"Deployment", "StatefulSet"}
