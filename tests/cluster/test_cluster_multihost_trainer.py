"""A multi-host introduction end to end with the real trainer: TaskIntroduction (``cpu.nodes:
2``) → operator → JobSet → JobSet's controller → one Job of two Indexed pods → the scheduler
binds them to two nodes whose local kubelets (kubelet.py) run each pod's ``mutask introduce``
as a local process, with the host index, host count and attempt the JobSet's pods carry →
both trainers share each generation's candidates through the store on the pod's claim, host 0
publishes → the operator marks the introduction Succeeded. The published task is the one a
single process publishes from the same config (bit-identical parameters, same score)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from controllers import WebhookController
from controlplane import ControlPlane
from gke_pools import CPU
from kubelet import LocalKubelet
from operator_proc import OperatorProcess
from scenario import intro, store_claim, system, ti, wait_phase

from mutask import contract
from mutask.contract import Progress
from mutask.operator import api
from mutask.trainer.store.system_store import SystemStore

NODES = ("local-kubelet-a", "local-kubelet-b")
BUDGET = {
    "generations": 2,
    "candidatesPerGeneration": 3,
    "validationRounds": 1,
    "stepsPerRound": 2,
    "batchSize": 16,
}


@pytest.fixture
def only_local_cpu_nodes(cp: ControlPlane) -> Iterator[None]:
    """Cordon the simulated CPU pool so the scheduler can only pick the local kubelets."""
    for node in CPU.node_names():
        cp.kubectl("cordon", node)
    yield
    for node in CPU.node_names():
        cp.kubectl("uncordon", node)


def published(store: Path, task: str) -> dict[str, Any]:
    found = SystemStore.open(str(store)).read_manifest(task)
    assert found is not None, f"{task} not published in {store}"
    m = found[0]
    return {
        "path": m["path"]["id"],
        "components": {cid: c["param_hash"] for cid, c in sorted(m["components"].items())},
        "score": m["score"],
        "test_accuracy": m["test_accuracy"],
    }


def test_two_hosts_end_to_end_publish_what_one_host_does(
    cp: ControlPlane,
    namespace: str,
    jobset_controller: WebhookController,
    start_operator: Callable[..., OperatorProcess],
    kubelet: Callable[..., LocalKubelet],
    only_local_cpu_nodes: None,
    tmp_path: Path,
) -> None:
    labels = {"cloud.google.com/gke-nodepool": "local-pool"}
    nodes = [kubelet(name, labels=labels) for name in NODES]
    start_operator()
    store = tmp_path / "store"
    cp.apply(store_claim(namespace, "store", store))
    cp.apply([system("vision", namespace, "store", store)])
    accel = {"type": "cpu", "cpu": {"nodes": 2}}
    cp.apply([intro("digits", namespace, "vision", accelerator=accel, budget=BUDGET)])
    try:
        obj = wait_phase(cp, namespace, "digits", api.SUCCEEDED, api.FAILED, timeout=400)
        assert obj["status"]["phase"] == api.SUCCEEDED, obj["status"]
    except AssertionError as err:
        raise AssertionError(f"{err}\n" + "\n".join(n.report() for n in nodes)) from err

    name = obj["status"]["jobName"]
    jobset = cp.get("jobsets.jobset.x-k8s.io", name, namespace)
    assert jobset is not None and jobset["spec"]["replicatedJobs"][0]["replicas"] == 1
    finished = [p for n in nodes for p in n.finished]
    assert sorted(p.exit_code or 0 for p in finished) == [0, 0], [n.report() for n in nodes]
    logs = "\n".join(p.log.read_text(errors="replace") for p in finished)
    assert "worker 1/2" in logs and "worker 2/2" in logs, logs[-3000:]
    progress = ti(cp, namespace, "digits")["status"]["progress"]
    assert progress[Progress.CANDIDATES_TRAINED] == 6
    assert progress[Progress.NO_FORGETTING_VERIFIED] is True

    # One process, the same config (the ConfigMap every host read), a fresh store.
    config = json.loads((cp.get("configmap", name, namespace) or {})["data"][contract.CONFIG_FILE])
    alone = tmp_path / "alone"
    config["store"] = f"file://{alone}"
    (tmp_path / "alone.json").write_text(json.dumps(config))
    mutask = str(Path(sys.executable).parent / "mutask")
    subprocess.run(
        [mutask, "introduce", "--config", str(tmp_path / "alone.json"), "--quiet"],
        check=True,
        cwd=tmp_path,
        capture_output=True,
    )
    assert published(store, "digits") == published(alone, "digits")
