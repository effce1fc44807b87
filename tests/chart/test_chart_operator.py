"""The chart's operator and trainer objects: the operator Deployment's defaults, settings and pod
security, namespaced mode, peering, least-privilege RBAC, workload identity and images."""

from __future__ import annotations

from typing import Any

from chart_scenarios import MONITORING, SCENARIOS, WI_GSA, containers, operator_args
from chart_support import (
    NAMESPACE,
    RELEASE,
    Rendered,
    render,
)


def test_operator_deployment_defaults(helm: str) -> None:
    rendered = render(helm)
    dep = rendered.one("Deployment", f"{RELEASE}-operator", NAMESPACE)
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["command"] == ["mutask"]
    assert c["args"] == [
        "operator",
        "--all-namespaces",
        "--metrics-port=8080",
        "--liveness-port=8081",
        "--standalone",
    ]
    assert c["image"] == "ghcr.io/mutask/operator:0.1.0"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 8080, "liveness": 8081}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "liveness"}
    assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
    env = {e["name"]: e.get("value") for e in c["env"]}
    # mutask.operator.settings reads MUTASK_<SETTING> (= the --<setting> flag).
    assert env["MUTASK_TRAINER_IMAGE_CPU"] == "ghcr.io/mutask/trainer:0.1.0-cpu"
    assert env["MUTASK_TRAINER_IMAGE_GPU"] == "ghcr.io/mutask/trainer:0.1.0-cuda"
    assert env["MUTASK_TRAINER_IMAGE_TPU"] == "ghcr.io/mutask/trainer:0.1.0-tpu"
    assert env["MUTASK_TRAINER_SERVICE_ACCOUNT"] == f"{RELEASE}-trainer"
    assert env["MUTASK_TRAINER_METRICS_PORT"] == "9090"
    assert env["MUTASK_RUN_AS_USER"] == "65532"
    assert env["MUTASK_IMAGE_PULL_POLICY"] == "IfNotPresent"
    assert pod["serviceAccountName"] == f"{RELEASE}-operator"
    # The selector is a subset of the pod labels, and the metrics Service selects the pod.
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert dep["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    svc = rendered.one("Service", f"{RELEASE}-metrics", NAMESPACE)
    assert svc["spec"]["selector"].items() <= pod_labels.items()
    assert svc["spec"]["ports"] == [
        {"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}
    ]


def test_operator_args_and_env_are_settings(helm: str) -> None:
    """Every flag and MUTASK_* variable the chart passes is an operator setting, and parses."""
    from dataclasses import fields

    from mutask.operator import settings

    dep = render(helm).one("Deployment", f"{RELEASE}-operator", NAMESPACE)
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["command"] + c["args"][:1] == ["mutask", "operator"]
    env = {e["name"]: e["value"] for e in c["env"] if e["name"].startswith("MUTASK_")}
    assert set(env) <= {settings.env_name(f.name) for f in fields(settings.Settings)}
    s = settings.load(c["args"][1:], env)
    assert (s.all_namespaces, s.metrics_port, s.liveness_port, s.standalone) == (
        True,
        8080,
        8081,
        True,
    )
    assert s.trainer_metrics_port == 9090 and s.run_as_user == 65532


def test_operator_is_restricted_pod_security(scenario: tuple[str, Rendered]) -> None:
    """The operator pod meets the 'restricted' Pod Security Standard."""
    _, rendered = scenario
    pod = rendered.one("Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert not pod.get("hostNetwork") and not pod.get("hostPID") and not pod.get("hostIPC")
    for c in pod["containers"]:
        sc = c["securityContext"]
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["runAsNonRoot"] is True
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not sc.get("privileged")
    for vol in pod.get("volumes", []):
        assert "hostPath" not in vol


def test_namespaced_mode(helm: str) -> None:
    rendered = render(helm, SCENARIOS["namespaced"])
    args = operator_args(rendered)
    assert "--namespace=team-a" in args and "--namespace=team-b" in args
    assert "--all-namespaces" not in args
    # Only the read-only CRD watch is cluster-wide.
    (cr,) = rendered.of_kind("ClusterRole")
    assert cr["metadata"]["name"].endswith("-crds")
    assert cr["rules"] == [
        {
            "apiGroups": ["apiextensions.k8s.io"],
            "resources": ["customresourcedefinitions"],
            "verbs": ["get", "list", "watch"],
        }
    ]
    for ns in ("team-a", "team-b"):
        role = rendered.one("Role", f"{RELEASE}-operator", ns)
        assert any("taskintroductions" in r["resources"] for r in role["rules"])
        rb = rendered.one("RoleBinding", f"{RELEASE}-operator", ns)
        assert rb["subjects"] == [
            {"kind": "ServiceAccount", "name": f"{RELEASE}-operator", "namespace": NAMESPACE}
        ]
        # Trainer identity follows the watched namespaces.
        rendered.one("ServiceAccount", f"{RELEASE}-trainer", ns)
    # PodMonitor (when on) is restricted to the same namespaces.
    pm = render(helm, {**SCENARIOS["namespaced"], **MONITORING}).one("PodMonitor")
    assert pm["spec"]["namespaceSelector"] == {"matchNames": ["team-a", "team-b"]}


def _grants(rules: list[dict[str, Any]], group: str, resource: str, verb: str) -> bool:
    return any(
        group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules
    )


def test_operator_rbac(helm: str) -> None:
    rendered = render(helm)
    rules = rendered.one("ClusterRole", f"{RELEASE}-operator")["rules"]
    for resource in ("multitasksystems", "taskintroductions"):
        for verb in ("get", "list", "watch"):
            assert _grants(rules, "mutask.dev", resource, verb)
        assert _grants(rules, "mutask.dev", f"{resource}/status", "patch")
        assert _grants(rules, "mutask.dev", f"{resource}/finalizers", "update")
    # kopf's finalizer on systems (their timers need one) is a patch; an introduction's spec
    # is the user's alone (it gets no finalizer).
    assert _grants(rules, "mutask.dev", "multitasksystems", "patch")
    assert not _grants(rules, "mutask.dev", "taskintroductions", "patch")
    for verb in ("create", "get", "list", "watch", "patch", "delete"):
        assert _grants(rules, "batch", "jobs", verb)
    for verb in ("create", "get"):  # deleted with their Job by the garbage collector
        assert _grants(rules, "", "configmaps", verb)
    assert _grants(rules, "", "events", "create")
    # The operator watches trainer pods (preemptions, unschedulable pods): list AND watch.
    assert _grants(rules, "", "pods", "list") and _grants(rules, "", "pods", "watch")
    assert not _grants(rules, "", "pods", "delete")
    # Least privilege: no wildcards, no secrets, no peering without peering.
    for rule in rules:
        assert (
            "*" not in rule["verbs"]
            and "*" not in rule["resources"]
            and "*" not in rule["apiGroups"]
        )
        assert "secrets" not in rule["resources"]
    assert not _grants(rules, "kopf.dev", "clusterkopfpeerings", "patch")
    crb = rendered.one("ClusterRoleBinding", f"{RELEASE}-operator")
    assert crb["roleRef"]["name"] == f"{RELEASE}-operator"
    assert crb["subjects"][0]["name"] == f"{RELEASE}-operator"


def test_peering(helm: str) -> None:
    rendered = render(helm, SCENARIOS["peering-ha"])
    assert rendered.one("Deployment")["spec"]["replicas"] == 2
    args = operator_args(rendered)
    assert "--peering-name=mutask" in args and "--priority=0" in args and "--standalone" not in args
    rules = rendered.one("ClusterRole", f"{RELEASE}-operator")["rules"]
    for verb in ("get", "list", "watch", "patch"):
        assert _grants(rules, "kopf.dev", "clusterkopfpeerings", verb)
    assert rendered.one("ClusterKopfPeering", "mutask")["apiVersion"] == "kopf.dev/v1"
    namespaced = render(
        helm, {"operator": {"watchNamespaces": ["team-a"], "peering": {"enabled": True}}}
    )
    rules = namespaced.one("Role", f"{RELEASE}-operator", "team-a")["rules"]
    assert _grants(rules, "kopf.dev", "kopfpeerings", "patch")
    namespaced.one("KopfPeering", "mutask", "team-a")


def test_trainer_role_only_patches_introduction_status(scenario: tuple[str, Rendered]) -> None:
    name, rendered = scenario
    roles = [r for r in rendered.of_kind("Role") if r["metadata"]["name"] == f"{RELEASE}-trainer"]
    assert roles, f"no trainer Role in scenario {name}"
    for role in roles:
        assert role["rules"] == [
            {
                "apiGroups": ["mutask.dev"],
                "resources": ["taskintroductions/status"],
                "verbs": ["get", "patch"],
            }
        ]
        ns = role["metadata"]["namespace"]
        rb = rendered.one("RoleBinding", f"{RELEASE}-trainer", ns)
        assert rb["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": f"{RELEASE}-trainer",
        }
        assert rb["subjects"] == [
            {"kind": "ServiceAccount", "name": f"{RELEASE}-trainer", "namespace": ns}
        ]
        rendered.one("ServiceAccount", f"{RELEASE}-trainer", ns)


def test_workload_identity_annotation(helm: str) -> None:
    sa = render(helm).one("ServiceAccount", f"{RELEASE}-trainer", NAMESPACE)
    assert "iam.gke.io/gcp-service-account" not in sa["metadata"].get("annotations", {})
    sa = render(helm, SCENARIOS["workload-identity"]).one(
        "ServiceAccount", f"{RELEASE}-trainer", NAMESPACE
    )
    assert sa["metadata"]["annotations"] == {"iam.gke.io/gcp-service-account": WI_GSA}
    everything = render(helm, SCENARIOS["everything"])
    for ns in ("team-a", "team-c"):
        ann = everything.one("ServiceAccount", f"{RELEASE}-trainer", ns)["metadata"]["annotations"]
        assert ann == {"iam.gke.io/gcp-service-account": WI_GSA, "example.com/owner": "ml"}
    # The operator's own ServiceAccount never gets the trainer's Google identity.
    op_sa = everything.one("ServiceAccount", f"{RELEASE}-operator", NAMESPACE)
    assert "iam.gke.io/gcp-service-account" not in op_sa["metadata"].get("annotations", {})


def test_trainer_images_and_verbose(helm: str) -> None:
    rendered = render(helm, SCENARIOS["everything"])
    c = containers(rendered)[0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    for setting, variant in (("CPU", "cpu"), ("GPU", "cuda"), ("TPU", "tpu")):
        assert env[f"MUTASK_TRAINER_IMAGE_{setting}"] == (
            f"europe-docker.pkg.dev/p/r/trainer:1.2.3-{variant}"
        )
    assert c["image"] == "ghcr.io/mutask/operator@sha256:" + "a" * 64
    assert env["FOO"] == "bar"
    assert c["args"][-1] == "--verbose"
    assert "--verbose" not in operator_args(render(helm))
