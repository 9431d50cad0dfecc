"""checkov's Kubernetes policies over the chart as staging and prod render it.

checkov lives in its own venv (.tools/checkov, from `python scripts/install_checkov.py`; `make test`
installs it) because it pins packaging<24. Skips are in .checkov.yaml, each with its reason; this
test asserts that nothing else fails. Checks skipped there only because staging leaves an opt-in
feature off are run unskipped on the prod render, which turns that feature on.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    from tests.charts.conftest import Rendered

REPO = Path(__file__).resolve().parents[2]
CHECKOV = REPO / ".tools" / "checkov" / "bin" / "checkov"
CONFIG = REPO / ".checkov.yaml"
# Skipped in .checkov.yaml because staging leaves the feature off; prod must pass them.
PROD_MUST_PASS = ["CKV2_K8S_6"]  # every pod is selected by a NetworkPolicy


def checkov(manifest: Path, *options: str) -> dict[str, Any]:
    if not CHECKOV.exists():
        msg = f"{CHECKOV} is missing: run `python scripts/install_checkov.py` (make test does)"
        print(msg)
        pytest.skip(msg)
    command = [
        str(CHECKOV), "-f", str(manifest), "--framework", "kubernetes", "--skip-download",
        "--quiet", "--compact", "-o", "json", *options,
    ]  # fmt: skip
    # cwd: checkov would otherwise also pick up a .checkov.yaml from the working directory.
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False, cwd=manifest.parent)
    assert proc.stdout.strip(), f"checkov printed nothing (exit {proc.returncode}): {proc.stderr[-3000:]}"
    report = json.loads(proc.stdout)
    reports = report if isinstance(report, list) else [report]
    assert [r["check_type"] for r in reports] == ["kubernetes"], proc.stdout[:2000]
    result: dict[str, Any] = reports[0]
    return result


def describe(failed: list[dict[str, Any]]) -> str:
    return "\n".join(f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in failed)


@pytest.mark.parametrize("values", ["staging", "prod"])
def test_checkov_passes_with_only_the_documented_skips(
    values: str, render_values: Callable[[str], Rendered], tmp_path: Path
) -> None:
    manifest = tmp_path / f"{values}.yaml"
    manifest.write_text(render_values(values).text)
    report = checkov(manifest, "--config-file", str(CONFIG))
    summary = report["summary"]
    print(f"checkov {values}: {summary}")
    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= 20, summary  # the whole render was scanned
    assert summary["passed"] > 0
    failed = report["results"]["failed_checks"]
    assert summary["failed"] == 0 and not failed, describe(failed)


def test_prod_passes_the_checks_staging_skips(render_values: Callable[[str], Rendered], tmp_path: Path) -> None:
    manifest = tmp_path / "prod.yaml"
    manifest.write_text(render_values("prod").text)
    report = checkov(manifest, "--check", ",".join(PROD_MUST_PASS))
    failed = report["results"]["failed_checks"]
    assert report["summary"]["passed"] > 0, report["summary"]
    assert not failed, describe(failed)


def test_every_skip_is_justified() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    skips = config["skip-check"]
    lines = {line.split("#")[0].strip(" -"): line for line in CONFIG.read_text().splitlines() if "CKV" in line}
    for check in skips:
        line = lines.get(check, "")
        reason = line.partition("#")[2].strip()
        assert len(reason) > 20, f"{check} in .checkov.yaml has no justification comment"
