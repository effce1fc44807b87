"""The whole loop with the real trainer: TaskIntroduction → operator → Job → pod bound by the
scheduler to a node whose kubelet (kubelet.py) runs the pod's container command as a local
process → ``mutask introduce`` trains and publishes to the store on the pod's claim, patching
progress as the trainer's ServiceAccount → the operator marks the introduction Succeeded and
updates the MultitaskSystem. Deleting the introduction then garbage-collects the Job and pods
and leaves the published weights alone. Tiny budget: CPU, 1 generation of 2 candidates."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from controlplane import ControlPlane, wait_for
from gke_pools import CPU
from helm_release import TRAINER_SA
from kubelet import LocalKubelet
from operator_proc import OperatorProcess
from scenario import (
    condition,
    intro,
    job_of,
    pods_of,
    store_claim,
    store_digest,
    system,
    wait_phase,
)

from mutask.contract import ROOT_TASK, Progress
from mutask.operator import api

NODE = "local-kubelet-0"


@pytest.fixture
def only_local_cpu_node(cp: ControlPlane) -> Iterator[None]:
    """Cordon the simulated CPU pool so the scheduler can only pick the local kubelet's node."""
    for node in CPU.node_names():
        cp.kubectl("cordon", node)
    yield
    for node in CPU.node_names():
        cp.kubectl("uncordon", node)


def test_real_trainer_end_to_end(
    cp: ControlPlane,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    kubelet: Callable[..., LocalKubelet],
    only_local_cpu_node: None,
    tmp_path: Path,
) -> None:
    node = kubelet(NODE, labels={"cloud.google.com/gke-nodepool": "local-pool"})
    start_operator()
    store = tmp_path / "store"
    mark = cp.audit_mark()
    cp.apply(store_claim(namespace, "store", store))
    cp.apply([system("vision", namespace, "store", store)])
    cp.apply([intro("digits", namespace, "vision")])

    try:
        obj = wait_phase(cp, namespace, "digits", api.SUCCEEDED, api.FAILED, timeout=300)
        assert obj["status"]["phase"] == api.SUCCEEDED, obj["status"]
    except AssertionError as err:
        raise AssertionError(f"{err}\n{node.report()}") from err
    job = job_of(cp, namespace, "digits")
    (pod,) = pods_of(cp, namespace, job["metadata"]["name"])
    assert pod["spec"]["nodeName"] == NODE
    assert [p.exit_code for p in node.finished] == [0]

    # Progress, patched by the trainer itself as its ServiceAccount.
    progress = obj["status"]["progress"]
    assert progress[Progress.GENERATION] == progress[Progress.GENERATIONS] == 1
    assert progress[Progress.CANDIDATES_TRAINED] == 2
    assert progress[Progress.NO_FORGETTING_VERIFIED] is True
    assert 0.0 <= progress[Progress.TEST_ACCURACY] <= 1.0
    assert obj["status"]["generationProgress"] == "1/1"
    assert (condition(obj, api.NO_FORGETTING) or {}).get("status") == "True"
    trainer = f"system:serviceaccount:{namespace}:{TRAINER_SA}"
    assert ("mutask.dev", "taskintroductions/status", "patch") in cp.used(trainer, since=mark)
    assert cp.denied(trainer, since=mark) == []

    # The MultitaskSystem summarises what was published.
    def summarised() -> dict[str, object] | None:
        st = (cp.get("multitasksystems", "vision", namespace) or {}).get("status") or {}
        return st if st.get("tasks") == ["digits"] else None

    mts = wait_for("the MultitaskSystem's summary", summarised, 30)
    assert mts["taskCount"] == 1
    assert mts["taskParams"]["digits"]["introduction"] == "digits"  # type: ignore[index]

    # The store holds the published task.
    mutask = str(Path(sys.executable).parent / "mutask")
    shown = subprocess.run(
        [mutask, "show", "--store", f"file://{store}", "--json"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    published = {t["task"] for t in json.loads(shown.stdout)["tasks"]}
    assert published == {"digits", ROOT_TASK}  # the first introduction also made the root

    # Deleting the introduction collects its Job and pods, never the published weights.
    before = store_digest(store)
    cp.kubectl("delete", "ti", "digits", "-n", namespace)
    wait_for("the Job collected", lambda: not cp.list("jobs", namespace), 60)
    wait_for("the pods collected", lambda: not cp.list("pods", namespace), 60)
    assert store_digest(store) == before
