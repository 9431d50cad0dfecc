"""The registry's tool policy in the chart: values → ConfigMap → a directory mount the app re-reads."""

from __future__ import annotations

import json
from pathlib import PurePosixPath

from platform_common.auth import Principal
from tests.charts.test_helm_chart import (
    RELEASE,
    Docs,
    app_deployment,
    find,
    helm_bin,
    notes,
    one,
    pod_spec,
    render,
    render_fails,
)
from tool_registry.policy import access_for, parse

RULES = [
    {
        "name": "developers",
        "match": {"groups": ["developers"]},
        "see": ["github.*"],
        "call": ["github.get_*"],
        "call_destructive": ["github.delete_branch"],
    },
    {"name": "support", "match": {"subjects": ["bob"], "scopes": ["registry:call"]}, "call": ["jira.read_*"]},
]


def with_policy(rules: list[dict[str, object]], binary: str = "helm4") -> Docs:
    rules_json = json.dumps(rules)
    return render(
        helm_bin(binary),
        None,
        "--set",
        "tool-registry.policy.enabled=true",
        "--set-json",
        f"tool-registry.policy.rules={rules_json}",
    )


def test_default_has_no_policy_mount() -> None:
    docs = render(helm_bin("helm4"))
    config = one(docs, "ConfigMap", f"{RELEASE}-tool-registry")["data"]
    assert config["POLICY_FILE"] == "" and config["AUDIT_RETENTION_DAYS"] == "30"
    assert config["AUTH_GROUPS_CLAIM"] == "groups"
    assert not find(docs, "ConfigMap", f"{RELEASE}-tool-registry-policy")
    assert [v["name"] for v in pod_spec(app_deployment(docs, "tool-registry"))["volumes"]] == ["tmp"]


def test_rules_become_a_file_the_app_accepts_mounted_where_policy_file_points() -> None:
    for binary in ("helm4", "helm3"):
        docs = with_policy(RULES, binary)
        content = one(docs, "ConfigMap", f"{RELEASE}-tool-registry-policy")["data"]["policy.yaml"]
        policy = parse(content.encode(), "chart")
        bob = access_for(policy, Principal("bob", frozenset({"registry:call"})))
        assert bob.may_call("jira.read_ticket", destructive=False) and not bob.sees("github.get_issue")
        dev = access_for(policy, Principal("x", frozenset(), groups=frozenset({"developers"})))
        assert dev.may_call("github.delete_branch", destructive=True) and not dev.may_call(
            "github.x", destructive=False
        )

        file = one(docs, "ConfigMap", f"{RELEASE}-tool-registry")["data"]["POLICY_FILE"]
        spec = pod_spec(app_deployment(docs, "tool-registry"))
        (mount,) = [m for m in spec["containers"][0]["volumeMounts"] if m["name"] == "policy"]
        # A directory mount: the kubelet swaps its ..data symlink on updates (a subPath never changes).
        assert mount["mountPath"] == str(PurePosixPath(file).parent) and "subPath" not in mount and mount["readOnly"]
        (volume,) = [v for v in spec["volumes"] if v["name"] == "policy"]
        assert volume["configMap"]["name"] == f"{RELEASE}-tool-registry-policy"


def test_policy_edits_do_not_roll_the_pods() -> None:
    """The app re-reads the file, so the rules stay out of checksum/config."""

    def checksum(docs: Docs) -> str:
        annotations: dict[str, str] = app_deployment(docs, "tool-registry")["spec"]["template"]["metadata"][
            "annotations"
        ]
        return annotations["checksum/config"]

    assert checksum(with_policy(RULES)) == checksum(with_policy(RULES[:1]))


def test_schema_rejects_bad_rules() -> None:
    helm = helm_bin("helm4")
    bad_glob = [{"see": ["github.[a-z]*"]}]
    assert "policy" in render_fails(helm, None, "--set-json", f"tool-registry.policy.rules={json.dumps(bad_glob)}")
    misspelt = [{"match": {"group": ["x"]}}]
    assert "group" in render_fails(helm, None, "--set-json", f"tool-registry.policy.rules={json.dumps(misspelt)}")


def test_notes_say_when_the_policy_is_off() -> None:
    helm = helm_bin("helm4")
    assert "tool-registry.policy is off" in notes(helm)
    assert "tool-registry.policy is off" not in notes(helm, "--set", "tool-registry.policy.enabled=true")
