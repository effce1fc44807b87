"""Multi-host introductions on the real control plane: the operator makes a JobSet (JobSet
v0.11's controller and webhooks run beside it), its pods land on the multi-host TPU pool one
per host, a failed host restarts the whole set, a preemption restarts it without counting, and
bad input (exit 2) fails it without a restart."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from controllers import WebhookController
from controlplane import ControlPlane, wait_for
from gke_pools import TPU_V5E_MULTI, pool_of
from operator_proc import OperatorProcess
from scenario import EXIT_CODE, condition, end_pod, intro, ready_system, ti, wait_phase

from mutask import contract
from mutask.operator import api

Start = Callable[..., OperatorProcess]
JOBSETS = "jobsets.jobset.x-k8s.io"
V5E_4X4 = {
    "type": "tpu",
    "tpu": {"accelerator": "tpu-v5-lite-podslice", "topology": "4x4", "chips": 4},
}
INDEX = "batch.kubernetes.io/job-completion-index"
ATTEMPT = "jobset.sigs.k8s.io/restart-attempt"


def jobset_of(cp: ControlPlane, ns: str, name: str) -> dict[str, Any]:
    def probe() -> dict[str, Any] | None:
        js_name = (ti(cp, ns, name).get("status") or {}).get("jobName")
        return cp.get(JOBSETS, js_name, ns) if js_name else None

    return wait_for(f"the JobSet of {ns}/{name}", probe, 60)


def host_pods(cp: ControlPlane, ns: str, jobset: str, attempt: int) -> dict[int, dict[str, Any]]:
    """The Running pods of one start of the set, by host index, once every host runs."""

    def probe() -> dict[int, dict[str, Any]] | None:
        pods = cp.list("pods", ns, f"jobset.sigs.k8s.io/jobset-name={jobset}")
        running = {
            int(p["metadata"]["annotations"][INDEX]): p
            for p in pods
            if p["status"].get("phase") == "Running"
            and p["metadata"]["annotations"].get(ATTEMPT) == str(attempt)
            and EXIT_CODE not in p["metadata"]["annotations"]
            and not p["metadata"].get("deletionTimestamp")
        }
        return running if len(running) == 4 else None

    return wait_for(f"4 running hosts of JobSet {jobset}, attempt {attempt}", probe, 120)


def launch(cp: ControlPlane, ns: str, tmp_path: Path) -> str:
    mts = ready_system(cp, ns, tmp_path)
    cp.apply([intro("slice", ns, mts, accelerator=V5E_4X4)])
    wait_phase(cp, ns, "slice", api.RUNNING)
    return str(jobset_of(cp, ns, "slice")["metadata"]["name"])


def test_jobset_lands_on_the_multi_host_pool_and_succeeds(
    cp: ControlPlane,
    namespace: str,
    jobset_controller: WebhookController,
    start_operator: Start,
    tmp_path: Path,
) -> None:
    start_operator()
    name = launch(cp, namespace, tmp_path)
    js = cp.get(JOBSETS, name, namespace)
    assert js is not None and js["metadata"]["ownerReferences"][0]["name"] == "slice"
    pods = host_pods(cp, namespace, name, 0)
    nodes = {p["spec"]["nodeName"] for p in pods.values()}
    assert len(nodes) == 4 and all(pool_of(n) == TPU_V5E_MULTI for n in nodes), nodes
    for index, pod in pods.items():
        (container,) = pod["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert env[contract.ENV_HOSTS]["value"] == "4"
        assert container["resources"]["limits"][api.TPU_RESOURCE] == "4"
        assert pod["spec"]["hostname"] == f"{name}-host-0-{index}"
    service = cp.get("service", name, namespace)
    assert service is not None and service["spec"]["clusterIP"] == "None"
    for pod in pods.values():
        end_pod(cp, pod, 0)
    obj = wait_phase(cp, namespace, "slice", api.SUCCEEDED, api.FAILED)
    assert obj["status"]["phase"] == api.SUCCEEDED, obj["status"]
    assert "JobSet completed" in (condition(obj, api.SUCCEEDED) or {}).get("message", "")


def test_a_lost_host_restarts_the_whole_set(
    cp: ControlPlane,
    namespace: str,
    jobset_controller: WebhookController,
    start_operator: Start,
    tmp_path: Path,
) -> None:
    start_operator()
    name = launch(cp, namespace, tmp_path)
    first = host_pods(cp, namespace, name, 0)
    # A Spot preemption of host 1: the whole set restarts, not counted against maxRestarts.
    end_pod(cp, first[1], int(contract.ExitCode.PREEMPTED), disruption="PreemptionByScheduler")
    second = host_pods(cp, namespace, name, 1)
    assert not {p["metadata"]["uid"] for p in first.values()} & {
        p["metadata"]["uid"] for p in second.values()
    }
    js = cp.get(JOBSETS, name, namespace) or {}
    assert js["status"]["restarts"] == 1
    assert int(js["status"].get("restartsCountTowardsMax") or 0) == 0
    # Host 2 crashes (exit 1): the whole set restarts again, this time counted.
    end_pod(cp, second[2], int(contract.ExitCode.FAILED))
    third = host_pods(cp, namespace, name, 2)
    js = cp.get(JOBSETS, name, namespace) or {}
    assert js["status"]["restarts"] == 2
    assert int(js["status"].get("restartsCountTowardsMax") or 0) == 1
    obj = wait_phase(cp, namespace, "slice", api.RUNNING)
    assert "restarted 2 time(s)" in (condition(obj, api.RUNNING) or {}).get("message", ""), obj
    for pod in third.values():
        end_pod(cp, pod, 0)
    obj = wait_phase(cp, namespace, "slice", api.SUCCEEDED, api.FAILED)
    assert obj["status"]["phase"] == api.SUCCEEDED, obj["status"]
    assert int(obj["status"].get("preemptions") or 0) >= 1


def test_bad_input_fails_the_set_without_restart(
    cp: ControlPlane,
    namespace: str,
    jobset_controller: WebhookController,
    start_operator: Start,
    tmp_path: Path,
) -> None:
    start_operator()
    name = launch(cp, namespace, tmp_path)
    pods = host_pods(cp, namespace, name, 0)
    end_pod(cp, pods[3], int(contract.ExitCode.BAD_INPUT))
    obj = wait_phase(cp, namespace, "slice", api.FAILED, api.SUCCEEDED)
    failed = condition(obj, api.FAILED)
    assert obj["status"]["phase"] == api.FAILED and failed is not None
    assert "JobSet failed" in failed["message"], failed
    assert "failed with exit code 2" in failed["message"], failed  # the host Job's reason
    js = cp.get(JOBSETS, name, namespace) or {}
    assert int(js["status"].get("restarts") or 0) == 0, js["status"]
