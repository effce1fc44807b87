"""``helm install``/``kubectl apply`` as a user runs them, against the real kube-apiserver: the
CRDs (structural schemas and CEL rules compiled by the apiserver), the values schema, every
sample, and the chart's RBAC for the operator and the trainer."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from controlplane import REPO, ControlPlane
from gke_pools import CPU
from helm_release import CHART, OPERATOR_SA, RELEASE, RELEASE_NS, TRAINER_SA, Helm

SAMPLES = sorted((REPO / "manifests" / "samples").glob("*.yaml"))


def test_helm_install_deploys_everything(
    cp: ControlPlane, helm: Helm, chart: dict[str, Any]
) -> None:
    status = json.loads(helm("status", RELEASE, "-n", RELEASE_NS, "-o", "json").stdout)
    assert status["info"]["status"] == "deployed"
    version = json.loads(cp.kubectl("version", "-o", "json").stdout)["serverVersion"]
    assert version["gitVersion"] == "v1.36.3"  # helm's kubeVersion check saw the real version
    for plural in ("multitasksystems", "taskintroductions"):
        crd = cp.get("crd", f"{plural}.mutask.dev")
        assert crd is not None
        conds = {c["type"]: c for c in crd["status"]["conditions"]}
        assert conds["Established"]["status"] == "True"
        assert conds["NamesAccepted"]["status"] == "True"
        assert "NonStructuralSchema" not in conds
    # The operator Deployment is available: its pod was scheduled onto the CPU pool.
    available = {c["type"]: c["status"] for c in chart["status"]["conditions"]}
    assert available["Available"] == "True"
    (pod,) = cp.list("pods", RELEASE_NS, "app.kubernetes.io/component=operator")
    assert pod["spec"]["nodeName"] in CPU.node_names()
    assert pod["spec"]["serviceAccountName"] == OPERATOR_SA
    assert cp.get("serviceaccount", TRAINER_SA, RELEASE_NS) is not None


def test_values_schema_rejects_a_misspelt_value(
    cp: ControlPlane, helm: Helm, chart: dict[str, Any]
) -> None:
    proc = helm(
        "install",
        "bad",
        str(CHART),
        "-n",
        RELEASE_NS,
        "--dry-run=server",
        "--set",
        "operator.replicas=2",
        check=False,
    )
    assert proc.returncode != 0
    assert "replicas" in proc.stderr and "not allowed" in proc.stderr, proc.stderr


def test_chart_rbac_answers_what_the_operator_and_trainer_use(
    cp: ControlPlane, chart: dict[str, Any]
) -> None:
    """`kubectl auth can-i` as each ServiceAccount, answered by the apiserver's RBAC authorizer."""
    op = f"system:serviceaccount:{RELEASE_NS}:{OPERATOR_SA}"
    trainer = f"system:serviceaccount:{RELEASE_NS}:{TRAINER_SA}"

    def can(user: str, verb: str, resource: str, ns: str | None = "any-ns") -> bool:
        resource, _, sub = resource.partition("/")
        args = ["auth", "can-i", verb, resource, "--as", user] + (["-n", ns] if ns else [])
        args += [f"--subresource={sub}"] if sub else []
        return cp.kubectl(*args, check=False).stdout.strip() == "yes"

    for verb in ("list", "watch"):
        assert can(op, verb, "pods"), f"the operator cannot {verb} pods"
        assert can(op, verb, "taskintroductions.mutask.dev")
        assert can(op, verb, "namespaces", None)
    for verb in ("create", "patch", "delete"):
        assert can(op, verb, "jobs.batch")
    assert can(op, "patch", "taskintroductions.mutask.dev/status")
    assert can(op, "update", "taskintroductions.mutask.dev/finalizers")
    assert can(op, "patch", "multitasksystems.mutask.dev")  # kopf's finalizer (timers)
    assert not can(op, "patch", "taskintroductions.mutask.dev")  # the user's spec
    assert not can(op, "delete", "pods") and not can(op, "get", "secrets")
    assert can(trainer, "patch", "taskintroductions.mutask.dev/status", RELEASE_NS)
    assert not can(trainer, "patch", "taskintroductions.mutask.dev", RELEASE_NS)
    assert not can(trainer, "get", "taskintroductions.mutask.dev/status", "other-ns")


@pytest.fixture
def samples_namespace(cp: ControlPlane, chart: dict[str, Any]) -> Any:
    namespaces = {
        d["metadata"]["namespace"] for p in SAMPLES for d in yaml.safe_load_all(p.read_text()) if d
    }
    for ns in namespaces:
        cp.kubectl("create", "namespace", ns)
    yield namespaces
    for ns in namespaces:
        cp.kubectl("delete", "namespace", ns, "--wait=false", check=False)


def test_kubectl_apply_every_sample(cp: ControlPlane, samples_namespace: set[str]) -> None:
    out = cp.kubectl("apply", "-f", str(REPO / "manifests" / "samples")).stdout
    applied = [line.split()[0] for line in out.splitlines() if line.endswith("created")]
    expected = [
        f"{d['kind'].lower()}.{d['apiVersion'].split('/')[0]}/{d['metadata']['name']}"
        if "/" in d["apiVersion"]
        else f"{d['kind'].lower()}/{d['metadata']['name']}"
        for p in SAMPLES
        for d in yaml.safe_load_all(p.read_text())
        if d
    ]
    assert sorted(applied) == sorted(expected), out
    # Applying again changes nothing: the apiserver's defaults do not fight the samples.
    again = cp.kubectl("apply", "-f", str(REPO / "manifests" / "samples")).stdout
    assert all(line.endswith("unchanged") for line in again.splitlines()), again


def test_plain_rbac_manifest_applies(cp: ControlPlane, namespace: str) -> None:
    """manifests/operator/rbac.yaml (generated with the chart's rules) is valid for the apiserver
    (its trainer part moved to this test's namespace; a server-side dry run changes nothing)."""
    text = (REPO / "manifests/operator/rbac.yaml").read_text()
    text = text.replace("namespace: mutask\n", f"namespace: {namespace}\n")
    out = cp.kubectl("apply", "--dry-run=server", "-f", "-", input=text).stdout
    lines = out.splitlines()
    assert len(lines) == len([d for d in yaml.safe_load_all(text) if d]), out
    assert all(line.endswith("(server dry run)") for line in lines), out
