"""Trainer pod outcomes, played by kwok stages on the real Job controller, garbage collector and
TTL controller, and how the operator reports them on the TaskIntroduction."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from controlplane import ControlPlane, wait_for
from operator_proc import OperatorProcess
from scenario import (
    condition,
    end_pod,
    intro,
    job_of,
    jobs,
    pods_of,
    ready_system,
    running_pod,
    store_digest,
    ti,
    wait_phase,
)

from mutask import contract
from mutask.operator import api

Start = Callable[..., OperatorProcess]


def launch(cp: ControlPlane, ns: str, tmp_path: Path, name: str = "intro") -> str:
    """A ready system and a CPU introduction on it; returns its Job's name once a pod runs."""
    mts = ready_system(cp, ns, tmp_path)
    cp.apply([intro(name, ns, mts)])
    wait_phase(cp, ns, name, api.RUNNING)
    job = job_of(cp, ns, name)["metadata"]["name"]
    running_pod(cp, ns, job)
    return str(job)


def test_success(cp: ControlPlane, namespace: str, start_operator: Start, tmp_path: Path) -> None:
    start_operator()
    job = launch(cp, namespace, tmp_path)
    end_pod(cp, running_pod(cp, namespace, job), 0)
    obj = wait_phase(cp, namespace, "intro", api.SUCCEEDED, api.FAILED)
    assert obj["status"]["phase"] == api.SUCCEEDED, obj["status"]
    assert obj["status"]["completionTime"]
    done = cp.get("job", job, namespace)
    assert done is not None and (condition(done, "Complete") or {}).get("status") == "True"


def test_bad_input_fails_fast(
    cp: ControlPlane, namespace: str, start_operator: Start, tmp_path: Path
) -> None:
    """Exit 2 (bad input): podFailurePolicy FailJob, no retry although backoffLimit is 6."""
    start_operator()
    job = launch(cp, namespace, tmp_path)
    end_pod(cp, running_pod(cp, namespace, job), int(contract.ExitCode.BAD_INPUT))
    obj = wait_phase(cp, namespace, "intro", api.FAILED, api.SUCCEEDED)
    failed = condition(obj, api.FAILED)
    assert obj["status"]["phase"] == api.FAILED and failed is not None
    assert "PodFailurePolicy" in failed["message"], failed
    job_obj = cp.get("job", job, namespace)
    assert job_obj is not None and job_obj["spec"]["backoffLimit"] == 6
    assert len(pods_of(cp, namespace, job)) == 1  # failed at once: no second pod


def test_preemption_retries_without_spending_backoff(
    cp: ControlPlane, namespace: str, start_operator: Start, tmp_path: Path
) -> None:
    """Exit 75 with a DisruptionTarget condition (Spot preemption: the trainer checkpointed on
    SIGTERM) is ignored by podFailurePolicy: a new pod runs although backoffLimit is 0."""
    start_operator(MUTASK_BACKOFF_LIMIT="0")
    job = launch(cp, namespace, tmp_path)
    first = running_pod(cp, namespace, job)
    end_pod(cp, first, int(contract.ExitCode.PREEMPTED), disruption="PreemptionByScheduler")
    second = running_pod(cp, namespace, job)
    assert second["metadata"]["uid"] != first["metadata"]["uid"]
    job_obj = cp.get("job", job, namespace)
    assert job_obj is not None and job_obj["spec"]["backoffLimit"] == 0
    assert int(job_obj["status"].get("failed") or 0) == 0  # not counted against backoffLimit
    wait_for("preemptions counted", lambda: ti(cp, namespace, "intro")["status"].get("preemptions"))
    end_pod(cp, second, 0)
    obj = wait_phase(cp, namespace, "intro", api.SUCCEEDED, api.FAILED)
    assert obj["status"]["phase"] == api.SUCCEEDED and obj["status"]["preemptions"] == 1


def test_plain_failure_spends_backoff(
    cp: ControlPlane, namespace: str, start_operator: Start, tmp_path: Path
) -> None:
    """The contrast: exit 1 counts against backoffLimit (0 here), so the Job fails."""
    start_operator(MUTASK_BACKOFF_LIMIT="0")
    job = launch(cp, namespace, tmp_path)
    end_pod(cp, running_pod(cp, namespace, job), int(contract.ExitCode.FAILED))
    obj = wait_phase(cp, namespace, "intro", api.FAILED, api.SUCCEEDED)
    assert "BackoffLimitExceeded" in (condition(obj, api.FAILED) or {}).get("message", "")


def test_operator_restart_mid_run_keeps_one_job(
    cp: ControlPlane, namespace: str, start_operator: Start, tmp_path: Path
) -> None:
    operator = start_operator()
    job = launch(cp, namespace, tmp_path)
    uid = jobs(cp, namespace)[0]["metadata"]["uid"]
    operator.stop()
    operator.start()  # a new process: indexes rebuilt from the apiserver
    time.sleep(4)  # several resyncs (every second) of the new process over the running Job
    assert [j["metadata"]["uid"] for j in jobs(cp, namespace)] == [uid]
    end_pod(cp, running_pod(cp, namespace, job), 0)
    wait_phase(cp, namespace, "intro", api.SUCCEEDED)  # seen by the new process
    assert [j["metadata"]["uid"] for j in jobs(cp, namespace)] == [uid]


def test_deleting_the_introduction_collects_job_and_pods(
    cp: ControlPlane, namespace: str, start_operator: Start, tmp_path: Path
) -> None:
    """The real garbage collector removes the Job, its pods and the ConfigMap (ownerReferences);
    the store (published weights) is never touched."""
    start_operator()
    job = launch(cp, namespace, tmp_path)
    weights = tmp_path / "store" / "published.safetensors"
    weights.write_bytes(b"weights that must survive")
    before = store_digest(tmp_path / "store")
    cp.kubectl("delete", "ti", "intro", "-n", namespace)
    wait_for("the Job collected", lambda: cp.get("job", job, namespace) is None, 60)
    wait_for("its pods collected", lambda: not pods_of(cp, namespace, job), 60)
    wait_for("its ConfigMap collected", lambda: cp.get("configmap", job, namespace) is None, 60)
    assert store_digest(tmp_path / "store") == before
    assert cp.get("pvc", "store", namespace) is not None


def test_ttl_after_finished_is_honoured(
    cp: ControlPlane, namespace: str, start_operator: Start, tmp_path: Path
) -> None:
    """The TTL controller deletes the finished Job; the introduction stays Succeeded and the
    operator does not start it again."""
    start_operator(MUTASK_TTL_SECONDS_AFTER_FINISHED="2")
    job = launch(cp, namespace, tmp_path)
    job_obj = cp.get("job", job, namespace)
    assert job_obj is not None and job_obj["spec"]["ttlSecondsAfterFinished"] == 2
    end_pod(cp, running_pod(cp, namespace, job), 0)
    wait_phase(cp, namespace, "intro", api.SUCCEEDED)
    wait_for("the TTL controller to delete the Job", lambda: not jobs(cp, namespace), 60)
    time.sleep(3)  # several resyncs
    assert not jobs(cp, namespace)
    assert ti(cp, namespace, "intro")["status"]["phase"] == api.SUCCEEDED
