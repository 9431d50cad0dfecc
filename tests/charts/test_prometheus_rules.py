"""The chart's alerts checked by Prometheus's own tool: ``promtool check rules`` and ``promtool test rules``.

The PrometheusRule is rendered by Helm 4 (values/prod.yaml, and the chart defaults with the rules on),
its ``spec`` written as a rules file, and promtool runs on it. The unit tests in
tests/charts/prometheus/rules_test.yaml make every alert fire a little past its threshold only after its
``for``, stay silent a little below it, and carry its severity and runbook; the mutation test below shows
they fail when a threshold moves.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.charts.conftest import CAPABILITIES, CHART, HELM4, NAMESPACE, RELEASE, REPO

RULES_TEST = Path(__file__).parent / "prometheus" / "rules_test.yaml"
ALERTS = {
    "MCPServerDown",
    "MCPHighErrorRate",
    "McpHighLatency",
    "McpDatabaseUnreachable",
    "MCPHighCPUUsage",
    "MCPHighMemoryUsage",
    "MCPJWTKeyRotationDue",
    "MCPJWTKeyStoreStale",
    "RegistryEmbeddingErrors",
    "RegistryUpstreamSyncFailing",
}


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        msg = "promtool not found: make system-packages (run by make test) could not install prometheus"
        print(msg)
        pytest.skip(msg)
    return found


def rule_groups(values: str | None, *sets: str) -> dict[str, Any]:
    """The rendered PrometheusRule's ``spec`` (its ``groups``): a Prometheus rules file."""
    if not HELM4.exists():
        msg = f"{HELM4} is missing: run `python scripts/install_helm.py` (make test does)"
        print(msg)
        pytest.skip(msg)
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE, *CAPABILITIES]
    args += ["-f", str(REPO / "values" / f"{values}.yaml")] if values else ["--set", "monitoring.rules.enabled=true"]
    for item in sets:
        args += ["--set-json", item]  # typed: --set makes 0.2 a string
    proc = subprocess.run([str(HELM4), *args], capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    rules = [d for d in yaml.safe_load_all(proc.stdout) if d and d["kind"] == "PrometheusRule"]
    assert len(rules) == 1, "expected one PrometheusRule"
    spec: dict[str, Any] = rules[0]["spec"]
    return spec


def run_unit_tests(groups: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(groups))
    shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)  # its rule_files names rules.yaml beside it
    return subprocess.run(
        [promtool(), "test", "rules", str(tmp_path / RULES_TEST.name)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("values", ["prod", None], ids=["prod", "defaults"])
def test_promtool_check_rules(values: str | None, tmp_path: Path) -> None:
    groups = rule_groups(values)
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(groups))
    proc = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    alerts = {r["alert"] for g in groups["groups"] for r in g["rules"]}
    assert alerts == ALERTS
    print(proc.stdout.strip())


def test_every_alert_has_promtool_unit_tests() -> None:
    tests = yaml.safe_load(RULES_TEST.read_text())["tests"]
    firing = {t["alertname"] for g in tests for t in g["alert_rule_test"] if t["exp_alerts"]}
    silent = {t["alertname"] for g in tests for t in g["alert_rule_test"] if not t["exp_alerts"]}
    assert firing == silent == ALERTS


def test_promtool_unit_tests_pass_on_the_prod_rules(tmp_path: Path) -> None:
    proc = run_unit_tests(rule_groups("prod"), tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


@pytest.mark.parametrize(
    "change",
    [
        "monitoring.rules.errorRatioThreshold=0.2",
        "monitoring.rules.errorRatioThreshold=0.05",
        "monitoring.rules.latencyP95Seconds=3",
        "monitoring.rules.cpuLimitRatio=0.9",
        "monitoring.rules.cpuLimitRatio=0.7",
        "monitoring.rules.memoryLimitRatio=0.96",
        "monitoring.rules.memoryLimitRatio=0.8",
        "monitoring.rules.keyMaxAgeHours=169",
        "monitoring.rules.keyMaxAgeHours=160",
        "monitoring.rules.embeddingErrorsPerSecond=0.2",
        "tree-of-thoughts.serviceMonitor.enabled=false",  # drops absent(up) of the ToT: still covered
        "tool-registry.serviceMonitor.enabled=false",  # drops absent(up) of the registry: must fail
    ],
)
def test_unit_tests_catch_a_moved_threshold(change: str, tmp_path: Path) -> None:
    """A threshold moved either way, or the no-target case dropped, fails the unit tests."""
    proc = run_unit_tests(rule_groups("prod", change), tmp_path)
    if change == "tree-of-thoughts.serviceMonitor.enabled=false":
        assert proc.returncode == 0, proc.stdout + proc.stderr  # the test data has ToT targets: no change
    else:
        assert proc.returncode != 0, f"{change}: the unit tests still pass\n{proc.stdout}"
        assert "FAILED" in proc.stdout + proc.stderr


@pytest.mark.parametrize("disabled", ["tool-registry", "tree-of-thoughts"])
def test_a_disabled_app_has_no_rules(disabled: str, tmp_path: Path) -> None:
    """The chart renders without one app; that app's rules and its absent(up) are not rendered."""
    groups = rule_groups("prod", f"{disabled}.enabled=false")
    rules = [r for g in groups["groups"] for r in g["rules"]]
    own = {"tool-registry": {"RegistryEmbeddingErrors", "RegistryUpstreamSyncFailing"},
           "tree-of-thoughts": {"MCPJWTKeyRotationDue", "MCPJWTKeyStoreStale"}}  # fmt: skip
    assert {r["alert"] for r in rules} == ALERTS - own[disabled]
    down = next(r["expr"] for r in rules if r["alert"] == "MCPServerDown")
    enabled = ({"tool-registry", "tree-of-thoughts"} - {disabled}).pop()
    assert f'job="{enabled}"' in down and f'job="{disabled}"' not in down, down
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(groups))
    proc = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
