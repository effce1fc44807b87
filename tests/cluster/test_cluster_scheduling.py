"""One TaskIntroduction per accelerator kind, reconciled by the operator (as the chart's
ServiceAccount) into a Job; the Job controller creates the pod and the real scheduler binds it
to the matching simulated GKE pool. A pool that does not exist shows in the status."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from controlplane import ControlPlane
from gke_pools import CPU, GPU_L4, SPOT_A100, TPU_V5E_SINGLE, NodePool, pool_of
from operator_proc import OperatorProcess
from scenario import condition, intro, job_of, pods_of, ready_system, wait_phase

from mutask.operator import api

KINDS: list[tuple[str, dict[str, Any], NodePool]] = [
    ("cpu", {"type": "cpu"}, CPU),
    ("gpu-l4", {"type": "gpu", "gpu": {"type": "nvidia-l4", "count": 1}}, GPU_L4),
    (
        "tpu-v5e-2x4",
        {
            "type": "tpu",
            "tpu": {"accelerator": "tpu-v5-lite-podslice", "topology": "2x4", "chips": 8},
        },
        TPU_V5E_SINGLE,
    ),
    (
        "spot-a100",
        {"type": "gpu", "gpu": {"type": "nvidia-tesla-a100", "count": 2}, "spot": True},
        SPOT_A100,
    ),
]


@pytest.mark.parametrize(("accel", "pool"), [k[1:] for k in KINDS], ids=[k[0] for k in KINDS])
def test_introduction_lands_on_its_pool(
    cp: ControlPlane,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    tmp_path: Path,
    accel: dict[str, Any],
    pool: NodePool,
) -> None:
    start_operator()
    mts = ready_system(cp, namespace, tmp_path)
    cp.apply([intro("intro", namespace, mts, accelerator=accel)])
    obj = wait_phase(cp, namespace, "intro", api.RUNNING)
    job = job_of(cp, namespace, "intro")
    (pod,) = pods_of(cp, namespace, job["metadata"]["name"])
    assert pool_of(pod["spec"]["nodeName"]) == pool, pod["spec"]["nodeName"]
    assert (condition(obj, api.RUNNING) or {}).get("status") == "True"
    node = cp.get("node", pod["spec"]["nodeName"])
    assert node is not None
    for key, value in pod["spec"].get("nodeSelector", {}).items():
        assert node["metadata"]["labels"][key] == value
    requested = pod["spec"]["containers"][0]["resources"]["limits"]
    for device in (api.GPU_RESOURCE, api.TPU_RESOURCE):
        if device in pool.devices:
            assert requested[device] == pool.devices[device]


def test_missing_pool_shows_in_status(
    cp: ControlPlane,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    tmp_path: Path,
) -> None:
    """No H100 pool exists: the introduction says so (Pending/Unschedulable, the scheduler's
    words), instead of waiting silently."""
    start_operator()
    mts = ready_system(cp, namespace, tmp_path)
    accel = {"type": "gpu", "gpu": {"type": "nvidia-h100-80gb", "count": 1}}
    cp.apply([intro("h100", namespace, mts, accelerator=accel)])
    obj = wait_phase(cp, namespace, "h100", api.PENDING)
    pending = condition(obj, api.PENDING)
    assert pending is not None and pending["status"] == "True", obj["status"]
    assert pending["reason"] == "Unschedulable"
    assert "didn't match Pod's node affinity/selector" in pending["message"], pending
    assert obj["status"]["jobName"]
