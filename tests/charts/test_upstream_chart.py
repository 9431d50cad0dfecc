"""The registry subchart wires the upstream controls: credentials by reference, ports, the tool cap."""

from __future__ import annotations

from tests.charts.test_helm_chart import RELEASE, app_deployment, helm_bin, one, pod_spec, render, render_fails


def test_upstream_credentials_come_from_one_secret_under_the_prefix() -> None:
    helm = helm_bin("helm4")
    plain = app_deployment(render(helm), "tool-registry")
    assert not [s for s in pod_spec(plain)["containers"][0]["envFrom"] if s.get("prefix")]

    docs = render(
        helm,
        None,
        "--set",
        "tool-registry.config.upstream.credentialsSecret=upstream-tokens",
        "--set",
        "tool-registry.config.upstream.allowedPorts={443,8443}",
        "--set",
        "tool-registry.config.upstream.maxTools=50",
    )
    sources = pod_spec(app_deployment(docs, "tool-registry"))["containers"][0]["envFrom"]
    assert {"prefix": "UPSTREAM_CREDENTIAL_", "secretRef": {"name": "upstream-tokens"}} in sources
    config = one(docs, "ConfigMap", f"{RELEASE}-tool-registry")["data"]
    assert config["UPSTREAM_ALLOWED_PORTS"] == "443,8443" and config["UPSTREAM_MAX_TOOLS"] == "50"


def test_upstream_ports_are_validated_by_the_schema() -> None:
    stderr = render_fails(helm_bin("helm4"), None, "--set", "tool-registry.config.upstream.allowedPorts={https}")
    assert "allowedPorts" in stderr
