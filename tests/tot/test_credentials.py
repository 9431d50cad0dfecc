"""``tot credentials ensure`` (the chart's database-credentials hook Job) against the Secrets API double,
through the official ``kubernetes`` client: passwords made once and kept, URLs rewritten, racing Jobs agree."""

from __future__ import annotations

import base64
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.tot.k8s_double import SecretsApi, api_client, secrets_api
from tree_of_thoughts.credentials import CHECKSUM_ANNOTATION, CredentialsError, DatabaseSecret, ensure
from tree_of_thoughts.issuer.stores import kubernetes_api

NS = "mcp"
URLS = {
    "DATABASE_URL": "postgresql://mcp@mcp-pgvector.mcp.svc:5432/mcp",
    "DATABASE_DIRECT_URL": "postgresql://mcp@mcp-pgvector.mcp.svc:5432/mcp",
}


def wanted(**changes: Any) -> DatabaseSecret:
    base: dict[str, Any] = {
        "name": "mcp-database",
        "namespace": NS,
        "username": "mcp",
        "password_keys": ["password", "postgres-password"],
        "urls": URLS,
        "labels": {"app.kubernetes.io/instance": "mcp"},
    }
    return DatabaseSecret(**(base | changes))


def stored(api: SecretsApi, name: str) -> dict[str, str]:
    data = api.secrets[(NS, name)].get("data") or {}
    return {k: base64.b64decode(v).decode() for k, v in data.items()}


def test_first_run_generates_passwords_and_urls_that_carry_the_roles_password() -> None:
    with secrets_api() as (api, url):
        summary = ensure(kubernetes_api(api_client(url)), wanted())
        data = stored(api, "mcp-database")
    assert summary == "created Secret mcp-database; generated password, postgres-password"
    assert re.fullmatch(r"[A-Za-z0-9]{32}", data["password"]) and re.fullmatch(
        r"[A-Za-z0-9]{32}", data["postgres-password"]
    )
    assert data["password"] != data["postgres-password"]
    assert data["DATABASE_URL"] == f"postgresql://mcp:{data['password']}@mcp-pgvector.mcp.svc:5432/mcp"
    assert data["username"] == "mcp"
    assert data["password"] not in summary


def test_later_runs_keep_the_passwords_and_follow_the_urls() -> None:
    with secrets_api() as (api, url):
        core = kubernetes_api(api_client(url))
        ensure(core, wanted(urls={**URLS, "DATABASE_READ_URL": "postgresql://mcp@ro.mcp.svc:5432/mcp"}))
        first = stored(api, "mcp-database")
        writes = api.writes
        assert ensure(core, wanted(urls={**URLS, "DATABASE_READ_URL": "postgresql://mcp@ro.mcp.svc:5432/mcp"})) == (
            "kept Secret mcp-database"
        )
        assert api.writes == writes  # nothing changed, nothing written
        pooled = {
            "DATABASE_URL": "postgresql://mcp@pooler.mcp.svc:5432/mcp",
            "DATABASE_DIRECT_URL": URLS["DATABASE_URL"],
        }
        summary = ensure(core, wanted(urls=pooled))
        second = stored(api, "mcp-database")
    assert "restart the apps" in summary
    assert second["password"] == first["password"] and second["postgres-password"] == first["postgres-password"]
    assert second["DATABASE_URL"] == f"postgresql://mcp:{first['password']}@pooler.mcp.svc:5432/mcp"
    assert "DATABASE_READ_URL" not in second  # a URL the chart no longer asks for is removed


def test_the_secret_an_older_chart_rendered_keeps_its_passwords() -> None:
    """The upgrade path: the chart used to render mcp-database itself (passwords from lookup)."""
    with secrets_api() as (api, url):
        api.create(NS, "mcp-database")
        legacy = {"password": "legacyAppPassword", "postgres-password": "legacySuperuser", "DATABASE_URL": "x"}
        api.secrets[(NS, "mcp-database")]["data"] = {
            k: base64.b64encode(v.encode()).decode() for k, v in legacy.items()
        }
        ensure(kubernetes_api(api_client(url)), wanted())
        data = stored(api, "mcp-database")
        labels = api.secrets[(NS, "mcp-database")]["metadata"]["labels"]
    assert data["password"] == "legacyAppPassword" and data["postgres-password"] == "legacySuperuser"
    assert data["DATABASE_URL"] == "postgresql://mcp:legacyAppPassword@mcp-pgvector.mcp.svc:5432/mcp"
    assert labels["app.kubernetes.io/name"] == "tree-of-thoughts"  # others' labels kept, ours added
    assert labels["app.kubernetes.io/instance"] == "mcp"


def test_cloudnativepg_gets_a_basic_auth_copy_and_an_existing_copy_is_the_source() -> None:
    cnpg = {"password_keys": ["password"], "basic_auth_secret": "mcp-db-app-credentials"}
    with secrets_api() as (api, url):
        core = kubernetes_api(api_client(url))
        ensure(core, wanted(**cnpg))
        main, copy = stored(api, "mcp-database"), stored(api, "mcp-db-app-credentials")
        assert api.secrets[(NS, "mcp-db-app-credentials")]["type"] == "kubernetes.io/basic-auth"
        assert copy == {"username": "mcp", "password": main["password"]}
    with secrets_api() as (api, url):  # an older chart's install: only the basic-auth copy holds the password
        api.create(NS, "mcp-db-app-credentials")
        api.secrets[(NS, "mcp-db-app-credentials")]["data"] = {"password": base64.b64encode(b"bootstrapped").decode()}
        ensure(kubernetes_api(api_client(url)), wanted(**cnpg))
        assert stored(api, "mcp-database")["password"] == "bootstrapped"


def test_a_secret_without_the_roles_password_is_refused_and_left_alone() -> None:
    with secrets_api() as (api, url):
        api.create(NS, "mcp-database")
        api.secrets[(NS, "mcp-database")]["data"] = {"DATABASE_URL": base64.b64encode(b"postgresql://x").decode()}
        with pytest.raises(CredentialsError, match="exists without the key 'password'"):
            ensure(kubernetes_api(api_client(url)), wanted())
        assert api.writes == 0


def test_a_url_that_already_carries_a_password_is_refused() -> None:
    with secrets_api() as (api, url), pytest.raises(CredentialsError, match="without a password"):
        ensure(kubernetes_api(api_client(url)), wanted(urls={"DATABASE_URL": "postgresql://mcp:pw@h/db"}))
        assert api.writes == 0


def test_racing_jobs_agree_on_one_password() -> None:
    with secrets_api() as (api, url):
        results: list[str] = []

        def run() -> None:
            ensure(kubernetes_api(api_client(url)), wanted())
            results.append(stored(api, "mcp-database")["password"])

        threads = [threading.Thread(target=run) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        final = stored(api, "mcp-database")["password"]
    assert len(results) == 6 and set(results) == {final}


def test_the_command_line_through_a_kubeconfig(tmp_path: Path) -> None:
    from tests.charts.cluster_emulation import write_kubeconfig

    with secrets_api() as (api, url):
        write_kubeconfig(tmp_path / "kubeconfig", url, NS)
        argv = [str(Path(sys.executable).parent / "tot"), "credentials", "ensure", "--secret", "mcp-database"]
        argv += ["--namespace", NS, "--username", "mcp", "--password-key", "password"]
        argv += ["--url", f"DATABASE_URL={URLS['DATABASE_URL']}", "--label", "a=b"]
        env = {"KUBECONFIG": str(tmp_path / "kubeconfig"), "PATH": "/usr/bin:/bin"}
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        data = stored(api, "mcp-database")
        assert data["password"] not in done.stdout + done.stderr
        assert done.stdout.strip() == "created Secret mcp-database; generated password"
        bad = subprocess.run(
            [*argv, "--label", "oops"], env=env, capture_output=True, text=True, timeout=60, check=False
        )
    assert bad.returncode != 0 and "--label takes KEY=VALUE" in bad.stderr


def test_the_deployments_roll_when_the_secret_changes_and_only_then() -> None:
    """The pods read the Secret at start: its checksum on their pod template rolls them when it changes."""
    with secrets_api() as (api, url):
        core = kubernetes_api(api_client(url))
        restart = ["mcp-tool-registry", "mcp-tree-of-thoughts", "mcp-tool-registry-canary"]
        # The first install: no Deployment exists yet, nothing to roll.
        assert "checksum" not in ensure(core, wanted(restart=restart))
        for name in restart[:2]:
            api.deployments[(NS, name)] = {}
        summary = ensure(core, wanted(restart=restart))
        first = {name: dict(api.deployments[(NS, name)]) for name in restart[:2]}
        assert summary.endswith("; checksum on mcp-tool-registry, mcp-tree-of-thoughts")
        assert (
            ensure(core, wanted(restart=restart)) and {n: dict(api.deployments[(NS, n)]) for n in restart[:2]} == first
        )
        pooled = {**URLS, "DATABASE_URL": "postgresql://mcp@pooler.mcp.svc:5432/mcp"}
        ensure(core, wanted(restart=restart, urls=pooled))
        second = {name: dict(api.deployments[(NS, name)]) for name in restart[:2]}
    assert all(set(v) == {CHECKSUM_ANNOTATION} for v in first.values())
    assert all(second[n][CHECKSUM_ANNOTATION] != first[n][CHECKSUM_ANNOTATION] for n in first)
    assert len({v[CHECKSUM_ANNOTATION] for v in second.values()}) == 1
