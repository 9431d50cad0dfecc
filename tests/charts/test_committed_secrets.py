"""No committed values file carries a working secret, and the helm test can take its client secret from a Secret."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
from typing import Any

import pytest
import yaml

from tests.charts.conftest import CAPABILITIES, CHART, HELM4, NAMESPACE, RELEASE, REPO

VALUES = sorted((REPO / "values").glob("*.yaml"))


def words(text: str) -> set[str]:
    """Every token of a YAML file that could be a secret: quoted or bare scalars, comments excluded."""
    body = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    return set(re.findall(r"[A-Za-z0-9_.\-+/=]{8,}", body))


@pytest.mark.parametrize("path", VALUES, ids=[p.name for p in VALUES])
def test_no_committed_client_secret_matches_a_committed_digest(path: Any) -> None:
    # Before: values/staging.yaml held a client secret and its digest, a working credential for anyone.
    text = path.read_text()
    values = yaml.safe_load(text) or {}
    assert not ((values.get("tests") or {}).get("oauth") or {}).get("clientSecret"), f"{path.name}: a client secret"
    digests = set(re.findall(r"\b[0-9a-f]{64}\b", text))
    preimages = {word for word in words(text) if hashlib.sha256(word.encode()).hexdigest() in digests}
    assert not preimages, f"{path.name}: the secret of a listed digest is committed beside it"


def render(*extra: str) -> list[dict[str, Any]]:
    if not HELM4.exists():
        pytest.skip(f"{HELM4} is missing: run `python scripts/install_helm.py` (make test does)")
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, *CAPABILITIES, *extra]
    proc = subprocess.run([str(HELM4), *args], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


AUDIENCE = "tool-registry"


def one_secret(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (secret,) = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == name]
    return secret


def test_the_helm_test_reads_its_client_secret_from_an_existing_secret() -> None:
    client = {"clientId": "helm-test", "secretSha256": "a" * 64, "scopes": ["registry:read"]}
    docs = render(
        "-f", str(REPO / "values" / "staging.yaml"),
        "--set-json", "tree-of-thoughts.secrets.oauthClients=" + json.dumps([{**client, "audiences": [AUDIENCE]}]),
        "--set", "tests.oauth.clientId=helm-test", "--set", "tests.oauth.existingSecret=mcp-helm-test-client",
    )  # fmt: skip
    test_secret = next(
        d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == f"{RELEASE}-mcp-platform-test"
    )
    assert set(test_secret["data"]) == {"OAUTH_CLIENT_ID"}  # the secret itself stays in the existing Secret
    pod = next(d for d in docs if d["kind"] == "Pod")
    sources = [s["secretRef"]["name"] for s in pod["spec"]["containers"][0]["envFrom"]]
    assert sources == [f"{RELEASE}-mcp-platform-test", "mcp-helm-test-client"]
    tot_secret = next(
        d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == f"{RELEASE}-tree-of-thoughts"
    )
    clients = json.loads(base64.b64decode(tot_secret["data"]["OAUTH_CLIENTS"]))
    assert clients == [{"client_id": "helm-test", "secret_sha256": "a" * 64, "scopes": ["registry:read"],
                        "audiences": [AUDIENCE]}]  # fmt: skip
