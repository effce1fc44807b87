"""JobSet v0.11 (built from sigs.k8s.io/jobset, run beside the control plane by
controllers.jobset): a JobSet spanning the multi-host TPU pool is admitted by its webhooks, its
controller creates the Job and the headless Service, and exclusive placement puts every pod on
the leader's node pool."""

from __future__ import annotations

from typing import Any

from controllers import WebhookController
from controlplane import ControlPlane, wait_for
from gke_pools import TPU_TAINT, TPU_V5E_MULTI, pool_of

from mutask.operator import api

JOBSET = "jobset.x-k8s.io/v1alpha2"
EXCLUSIVE = "alpha.jobset.sigs.k8s.io/exclusive-topology"


def raw_jobset(name: str, namespace: str, hosts: int) -> dict[str, Any]:
    pod = {
        "restartPolicy": "Never",
        "nodeSelector": {
            api.GKE_TPU_ACCELERATOR: "tpu-v5-lite-podslice",
            api.GKE_TPU_TOPOLOGY: "4x4",
        },
        "tolerations": [{"key": TPU_TAINT["key"], "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [
            {
                "name": "trainer",
                "image": "busybox",
                "resources": {"limits": {api.TPU_RESOURCE: 4}, "requests": {api.TPU_RESOURCE: 4}},
            }
        ],
    }
    job = {
        "completionMode": "Indexed",
        "completions": hosts,
        "parallelism": hosts,
        "backoffLimit": 0,
        "template": {"spec": pod},
    }
    return {
        "apiVersion": JOBSET,
        "kind": "JobSet",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "annotations": {EXCLUSIVE: "cloud.google.com/gke-nodepool"},
        },
        "spec": {
            "network": {"enableDNSHostnames": True},
            "replicatedJobs": [{"name": "host", "replicas": 1, "template": {"spec": job}}],
        },
    }


def test_jobset_pods_land_on_the_multi_host_pool(
    cp: ControlPlane, namespace: str, jobset_controller: WebhookController
) -> None:
    cp.apply([raw_jobset("slice", namespace, 4)])

    def placed() -> list[dict[str, Any]] | None:
        pods = cp.list("pods", namespace, "jobset.sigs.k8s.io/jobset-name=slice")
        bound = [p for p in pods if p["spec"].get("nodeName")]
        return bound if len(bound) == 4 else None

    pods = wait_for("4 JobSet pods bound to nodes", placed, 90)
    nodes = {p["spec"]["nodeName"] for p in pods}
    assert len(nodes) == 4, nodes
    assert all(pool_of(n) == TPU_V5E_MULTI for n in nodes), nodes
    service = cp.get("service", "slice", namespace)
    assert service is not None and service["spec"]["clusterIP"] == "None"
    hostnames = sorted(p["spec"]["hostname"] for p in pods)
    assert hostnames == [f"slice-host-0-{i}" for i in range(4)]
    assert {p["spec"]["subdomain"] for p in pods} == {"slice"}
