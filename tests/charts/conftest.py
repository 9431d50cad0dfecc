"""Fixtures shared by the chart tests that work on rendered manifests (checkov, manifests-run)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "mcp-platform"
HELM4 = REPO / ".tools" / "bin" / "helm"
RELEASE = "mcp"
NAMESPACE = "mcp-test"
# Render as a cluster with the Prometheus Operator, cert-manager, CloudNativePG and Gateway API CRDs.
CAPABILITIES = [
    *("--api-versions", "monitoring.coreos.com/v1"),
    *("--api-versions", "cert-manager.io/v1"),
    *("--api-versions", "postgresql.cnpg.io/v1"),
    *("--api-versions", "gateway.networking.k8s.io/v1"),
    *("--kube-version", "1.33.0"),
]

Docs = list[dict[str, Any]]


class Rendered:
    """One `helm template` output: the YAML text and its parsed objects."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.docs: Docs = [d for d in yaml.safe_load_all(text) if d]

    def find(self, kind: str) -> Docs:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        for doc in self.find(kind):
            if doc["metadata"]["name"] == name:
                return doc
        return None


@pytest.fixture(scope="session")
def render_values() -> Callable[[str], Rendered]:
    """``render_values("staging")``: the chart rendered by Helm 4 with values/<name>.yaml (cached)."""
    cache: dict[str, Rendered] = {}

    def render(name: str) -> Rendered:
        if name not in cache:
            if not HELM4.exists():
                msg = f"{HELM4} is missing: run `python scripts/install_helm.py` (make test does)"
                print(msg)
                pytest.skip(msg)
            values = REPO / "values" / f"{name}.yaml"
            args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, "-f", str(values), *CAPABILITIES]
            proc = subprocess.run([str(HELM4), *args], capture_output=True, text=True, timeout=120, check=False)
            assert proc.returncode == 0, proc.stderr
            cache[name] = Rendered(proc.stdout)
        return cache[name]

    return render


@pytest.fixture(scope="session")
def runtime_venv() -> Iterator[Path]:
    """The venv the emulated pods run from (built once per session; see tests/charts/cluster_emulation.py)."""
    from tests.charts.cluster_emulation import built_runtime_venv

    with built_runtime_venv() as venv:
        yield venv
