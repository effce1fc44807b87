"""Kueue, built from sigs.k8s.io/kueue and run beside the control plane (controllers.py): a
queued introduction's Job stays suspended until Kueue admits it, then runs."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from controllers import WebhookController, kueue
from controlplane import SCRIPT, ControlPlane, wait_for
from operator_proc import OperatorProcess
from scenario import (
    condition,
    end_pod,
    intro,
    job_of,
    ready_system,
    running_pod,
    ti,
    wait_phase,
)

from mutask.operator import api

KUEUE = "kueue.x-k8s.io/v1beta2"
QUOTA_PATH = "/spec/resourceGroups/0/flavors/0/resources/0/nominalQuota"  # cpu


@pytest.fixture(scope="module")
def kueue_controller(
    cp: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebhookController]:
    share = Path(
        subprocess.run(
            ["bash", str(SCRIPT), "share-dir"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    controller = kueue(cp, tmp_path_factory.mktemp("kueue"), share / "kueue")
    controller.start()
    yield controller
    controller.stop()


def queues(namespace: str, cpu: str) -> list[dict[str, object]]:
    quota = [{"name": "cpu", "nominalQuota": cpu}, {"name": "memory", "nominalQuota": "64Gi"}]
    return [
        {"apiVersion": KUEUE, "kind": "ResourceFlavor", "metadata": {"name": "default-flavor"}},
        {
            "apiVersion": KUEUE,
            "kind": "ClusterQueue",
            "metadata": {"name": f"cq-{namespace}"},
            "spec": {
                "namespaceSelector": {},
                "resourceGroups": [
                    {
                        "coveredResources": ["cpu", "memory"],
                        "flavors": [{"name": "default-flavor", "resources": quota}],
                    }
                ],
            },
        },
        {
            "apiVersion": KUEUE,
            "kind": "LocalQueue",
            "metadata": {"name": "team", "namespace": namespace},
            "spec": {"clusterQueue": f"cq-{namespace}"},
        },
    ]


def test_queued_introduction_waits_for_admission(
    cp: ControlPlane,
    namespace: str,
    kueue_controller: WebhookController,
    start_operator: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    start_operator()
    cp.apply(queues(namespace, cpu="0"))  # no quota yet: nothing can be admitted
    mts = ready_system(cp, namespace, tmp_path)
    cp.apply([intro("queued", namespace, mts, queueName="team")])
    wait_phase(cp, namespace, "queued", api.QUEUED)
    job = job_of(cp, namespace, "queued")
    name = job["metadata"]["name"]
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team"
    workload = wait_for(
        "Kueue's Workload for the Job", lambda: cp.list("workloads.kueue.x-k8s.io", namespace), 60
    )
    assert workload[0]["spec"]["queueName"] == "team"
    time.sleep(3)  # Kueue has looked at it and keeps it waiting
    job = cp.get("job", name, namespace)
    assert job is not None and job["spec"]["suspend"] is True
    (workload,) = cp.list("workloads.kueue.x-k8s.io", namespace)
    assert (condition(workload, "QuotaReserved") or {}).get("status") != "True"
    queued = condition(ti(cp, namespace, "queued"), api.QUEUED)
    assert queued is not None and queued["status"] == "True"
    assert "waiting for Kueue to admit the Job" in queued["message"]
    # Quota arrives: Kueue admits the Workload and unsuspends the Job; the pod runs.
    cp.kubectl(
        "patch",
        "clusterqueue",
        f"cq-{namespace}",
        "--type=json",
        "-p",
        json.dumps([{"op": "replace", "path": QUOTA_PATH, "value": "4"}]),
    )
    wait_phase(cp, namespace, "queued", api.RUNNING)
    job = cp.get("job", name, namespace)
    assert job is not None and job["spec"]["suspend"] is False
    (workload,) = cp.list("workloads.kueue.x-k8s.io", namespace)
    assert (condition(workload, "Admitted") or {}).get("status") == "True"
    end_pod(cp, running_pod(cp, namespace, name), 0)
    wait_phase(cp, namespace, "queued", api.SUCCEEDED)
    cp.kubectl("delete", "clusterqueue", f"cq-{namespace}", "--wait=false", check=False)
