"""The introduction plan's table (for test_op_plan.py): one ``Row`` per observed world, with
the state, actions, status, announcements and claims ``plan_introduction`` must decide."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from op_samples import NOW, job

from mutask.operator import api
from mutask.operator.actions import (
    Claim,
    Create,
    DeleteJob,
    Release,
    SuspendJob,
)
from mutask.operator.admission import Peer
from mutask.operator.conditions import ti_status
from mutask.operator.settings import Settings

S = Settings()
READY = {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready"}]}
BOOTING = {
    "conditions": [
        {"type": "Ready", "status": "False", "reason": "Bootstrapping", "message": "root"}
    ]
}


def deleting(body: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(body)
    out["metadata"]["deletionTimestamp"] = NOW
    return out


def state(st: str, accepted: bool = True, reason: str | None = None) -> dict[str, Any]:
    """An introduction's status after an earlier plan put it in ``st``."""
    return ti_status(
        {}, 1, st, f"was {st}", "2026-01-01T00:00:00Z", accepted=accepted, reason=reason
    )


NO_NODE = "0/9 nodes are available: 9 node(s) didn't match Pod's node affinity/selector."
RUNNING_PEER = Peer("other", "digits", api.RUNNING, "2026-01-01T00:00:01Z")
BUSY = Peer("busy", "cifar", api.RUNNING, "2026-01-01T00:00:01Z")


@dataclass
class Row:
    """One observed world and what the plan must decide for it."""

    id: str
    state: str
    message: str = ""  # a substring of the state's message
    spec: dict[str, Any] = field(default_factory=dict)  # merged into the sample introduction
    status: dict[str, Any] = field(default_factory=dict)
    job: dict[str, Any] | None = None
    system: bool = True
    system_status: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(READY))
    peers: tuple[Peer, ...] = ()
    preemptions: int = 0
    unschedulable: str | None = None  # the scheduler's message for an unplaced trainer pod
    reason: str | None = None  # of the state's condition and event (default: the state)
    actions: tuple[type, ...] = ()
    claims: tuple[type, ...] = ()
    counts: tuple[str, ...] = ()
    event: bool = True  # a transition event is announced
    wakes: bool = False
    jobset_api: bool = True  # the cluster serves JobSets
    host_failure: str | None = None  # a failed JobSet's host Job's failure message
    kinds: tuple[str, ...] = ()  # kinds of the actions' targets, when checked


V5E_4X4 = {
    "type": "tpu",
    "tpu": {"accelerator": "tpu-v5-lite-podslice", "topology": "4x4", "chips": 4},
}
MULTI = {"accelerator": V5E_4X4}
JS_FAILED = {"conditions": [{"type": "Failed", "status": "True", "reason": "FailedJobs"}]}


def jobset(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {"kind": "JobSet", **job(status, **spec)}


def hosts(active: int = 1, ready: int = 0) -> dict[str, Any]:
    return {"replicatedJobsStatus": [{"name": "host", "active": active, "ready": ready}]}


ADMISSION_ROWS = [
    Row(
        "multi-host-admitted",
        api.ACCEPTED,
        "trainer JobSet created; waiting for its 4 pods",
        spec=MULTI,
        actions=(Create, Create),
        claims=(Claim,),
        kinds=("ConfigMap", "JobSet"),
    ),
    Row(
        "multi-host-without-jobset",
        api.QUEUED,
        "4 hosts run as a JobSet, but this cluster does not serve jobset.x-k8s.io/v1alpha2",
        spec=MULTI,
        jobset_api=False,
        reason="JobSetNotInstalled",
    ),
    Row(
        "multi-host-shape-gke-does-not-offer",
        api.FAILED,
        "invalid spec: spec.accelerator.tpu.topology 3x3 is not a slice GKE offers",
        spec={"accelerator": {"type": "tpu", "tpu": {**V5E_4X4["tpu"], "topology": "3x3"}}},
        claims=(Release, Release),
    ),
    Row(
        "jobset-waiting-for-pods",
        api.ACCEPTED,
        "waiting for its pods",
        spec=MULTI,
        job=jobset(),
        status=state(api.ACCEPTED),
        event=False,
    ),
    Row(
        "jobset-running",
        api.RUNNING,
        "trainer pods running (all hosts ready)",
        spec=MULTI,
        job=jobset(hosts(1, 1)),
        status=state(api.ACCEPTED),
    ),
    Row(
        "jobset-unschedulable",
        api.PENDING,
        NO_NODE,
        spec=MULTI,
        job=jobset(hosts(1, 0)),
        status=state(api.ACCEPTED),
        unschedulable=NO_NODE,
        reason=api.UNSCHEDULABLE,
    ),
    Row(
        "jobset-restarted-running",
        api.RUNNING,
        "the set restarted 2 time(s)",
        spec=MULTI,
        job=jobset({**hosts(1, 1), "restarts": 2}),
        status=state(api.ACCEPTED),
    ),
    Row(
        "jobset-completed",
        api.SUCCEEDED,
        "the trainer JobSet completed",
        spec=MULTI,
        job=jobset({"conditions": [{"type": "Completed", "status": "True"}]}),
        status=state(api.RUNNING),
        claims=(Release,),
        wakes=True,
    ),
    Row(
        "jobset-failed",
        api.FAILED,
        "the trainer JobSet failed (FailedJobs)",
        spec=MULTI,
        job=jobset(JS_FAILED),
        status=state(api.RUNNING),
        claims=(Release,),
        counts=("jobs_failed",),
        wakes=True,
    ),
    Row(
        "jobset-failed-names-its-host",
        api.FAILED,
        "FailedJobs); mti-digits-1-host-0: Container trainer for pod ns/p failed with exit code 2",
        spec=MULTI,
        job=jobset(JS_FAILED),
        status=state(api.RUNNING),
        host_failure="mti-digits-1-host-0: Container trainer for pod ns/p failed with exit code 2",
        claims=(Release,),
        counts=("jobs_failed",),
        wakes=True,
    ),
    Row(
        "suspend-running-jobset",
        api.SUSPENDED,
        "spec.suspend",
        spec={**MULTI, "suspend": True},
        job=jobset(hosts(1, 1)),
        status=state(api.RUNNING),
        actions=(SuspendJob,),
        claims=(Release, Release),
        wakes=True,
        kinds=("JobSet",),
    ),
    Row(
        "suspend-kueue-jobset",
        api.SUSPENDED,
        "spec.suspend",
        spec={**MULTI, "suspend": True, "queueName": "q"},
        job=jobset(hosts(1, 1)),
        status=state(api.RUNNING),
        actions=(DeleteJob,),
        claims=(Release, Release),
        wakes=True,
        kinds=("JobSet",),
    ),
    Row(
        "kueue-pending-jobset",
        api.QUEUED,
        "waiting for Kueue to admit the JobSet",
        spec={**MULTI, "queueName": "q"},
        job=jobset(suspend=True),
        status=state(api.ACCEPTED),
    ),
    Row("no-system", api.QUEUED, "MultitaskSystem vision not found", system=False),
    Row("system-not-ready", api.QUEUED, "to be Ready (Bootstrapping: root)", system_status=BOOTING),
    Row("admitted", api.ACCEPTED, "trainer Job created", actions=(Create, Create), claims=(Claim,)),
    Row("same-task-running", api.QUEUED, "being introduced by other", peers=(RUNNING_PEER,)),
    Row(
        "empty-store-one-at-a-time",
        api.QUEUED,
        "1/1 introductions",
        peers=(BUSY,),
        system_status={**READY, "storeEmpty": True},
    ),
    Row(
        "suspended-before-start",
        api.SUSPENDED,
        "before start",
        spec={"suspend": True},
        claims=(Release, Release),
    ),
    Row(
        "invalid-spec",
        api.FAILED,
        "invalid spec: budget.generations=0",
        spec={"budget": {"generations": 0}},
        claims=(Release, Release),
    ),
    Row(
        "job-waiting-for-pod",
        api.ACCEPTED,
        "waiting for its pod",
        job=job(),
        status=state(api.ACCEPTED),
        event=False,
    ),
    Row(
        "job-running",
        api.RUNNING,
        "trainer pod running (1 ready)",
        job=job({"active": 1, "ready": 1}),
        status=state(api.ACCEPTED),
    ),
]
