"""The pure plans as tables: observed world -> (state, actions, status, announcements, claims).

No API, no clock: each row builds an ``Observed`` and checks what ``plan_introduction`` or
``plan_system`` decide. A second pass re-plans with the committed status and expects a fixpoint
(no status change, nothing announced): the plan is idempotent.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from op_samples import COMPLETE, FAILED, INTRO, NOW, SYSTEM, job, merged

from mutask.operator import api
from mutask.operator.actions import (
    Claim,
    Count,
    Create,
    DeleteJob,
    Event,
    Plan,
    Release,
    SuspendJob,
)
from mutask.operator.admission import Peer
from mutask.operator.conditions import ti_status
from mutask.operator.plan import Observed, plan_introduction
from mutask.operator.settings import Settings
from mutask.operator.spec import parse_introduction, parse_system
from mutask.trainer.config import IntroduceConfig

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


ROWS = [
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
    Row(
        "unschedulable-pod",
        api.PENDING,
        f"trainer pod unschedulable: {NO_NODE}",
        job=job({"active": 1}),
        status=state(api.ACCEPTED),
        unschedulable=NO_NODE,
        reason=api.UNSCHEDULABLE,
    ),
    Row(
        "unschedulable-after-preemption",
        api.PENDING,
        NO_NODE,
        job=job({"active": 1}),
        status=state(api.RUNNING),
        unschedulable=NO_NODE,
        reason=api.UNSCHEDULABLE,
    ),
    Row(
        "unschedulable-pod-placed",
        api.RUNNING,
        "trainer pod running (1 ready)",
        job=job({"active": 1, "ready": 1}),
        status=state(api.PENDING, reason=api.UNSCHEDULABLE),
    ),
    Row(
        "ready-pod-beats-a-stale-unschedulable-one",
        api.RUNNING,
        "trainer pod running (1 ready)",
        job=job({"active": 1, "ready": 1}),
        status=state(api.RUNNING),
        unschedulable=NO_NODE,
        event=False,
    ),
    Row(
        "unschedulable-then-suspended",
        api.SUSPENDED,
        "spec.suspend",
        spec={"suspend": True},
        job=job({"active": 1}),
        status=state(api.PENDING, reason=api.UNSCHEDULABLE),
        unschedulable=NO_NODE,
        actions=(SuspendJob,),
        claims=(Release, Release),
        wakes=True,
    ),
    Row(
        "job-complete",
        api.SUCCEEDED,
        "completed",
        job=job(COMPLETE),
        status=state(api.RUNNING),
        claims=(Release,),
        wakes=True,
    ),
    Row(
        "job-failed",
        api.FAILED,
        "PodFailurePolicy",
        job=job(FAILED),
        status=state(api.RUNNING),
        claims=(Release,),
        counts=("jobs_failed",),
        wakes=True,
    ),
    Row(
        "suspend-running-job",
        api.SUSPENDED,
        "spec.suspend",
        spec={"suspend": True},
        job=job({"active": 1}),
        status=state(api.RUNNING),
        actions=(SuspendJob,),
        claims=(Release, Release),
        wakes=True,
    ),
    Row(
        "suspend-kueue-job",
        api.SUSPENDED,
        "spec.suspend",
        spec={"suspend": True, "queueName": "q"},
        job=job({"active": 1}),
        status=state(api.RUNNING),
        actions=(DeleteJob,),
        claims=(Release, Release),
        wakes=True,
    ),
    Row(
        "already-suspended",
        api.SUSPENDED,
        "spec.suspend",
        spec={"suspend": True},
        job=job(suspend=True),
        status=state(api.SUSPENDED),
        claims=(Release,),
        event=False,
    ),
    Row(
        "resume-admitted",
        api.ACCEPTED,
        "resumed",
        job=job(suspend=True),
        status=state(api.SUSPENDED),
        actions=(SuspendJob,),
        claims=(Claim,),
    ),
    Row(
        "resume-blocked",
        api.QUEUED,
        "being introduced by other",
        job=job(suspend=True),
        status=state(api.SUSPENDED),
        peers=(RUNNING_PEER,),
    ),
    Row(
        "kueue-pending",
        api.QUEUED,
        "waiting for Kueue",
        spec={"queueName": "q"},
        job=job(suspend=True),
        status=state(api.ACCEPTED),
    ),
    Row(
        "job-deleting-suspended",
        api.SUSPENDED,
        "Job is stopping",
        spec={"suspend": True},
        job=deleting(job()),
        status=state(api.SUSPENDED),
        event=False,
    ),
    Row(
        "job-deleting",
        api.QUEUED,
        "still being deleted",
        job=deleting(job()),
        status=state(api.SUSPENDED),
    ),
    Row(
        "succeeded-is-final",
        api.SUCCEEDED,
        "was Succeeded",
        job=job({"active": 1}),
        status=state(api.SUCCEEDED),
        event=False,
    ),
    Row("failed-is-final", api.FAILED, "was Failed", status=state(api.FAILED), event=False),
    Row(
        "phase-field-is-not-read",
        api.RUNNING,
        "trainer pod running",
        job=job({"active": 1}),
        status={**state(api.RUNNING), "phase": api.SUCCEEDED},
        event=False,
    ),
    Row(
        "preempted",
        api.RUNNING,
        "trainer pod running",
        job=job({"active": 1}),
        status=state(api.RUNNING),
        preemptions=2,
        counts=("jobs_preempted",),
        event=False,
    ),
]


ADMITTED = next(r for r in ROWS if r.id == "admitted")


def world(row: Row, status: dict[str, Any] | None = None) -> Observed:
    return Observed(
        status=row.status if status is None else status,
        now=NOW,
        job=row.job,
        system=parse_system(SYSTEM) if row.system else None,
        system_status=row.system_status if row.system else None,
        peers=row.peers,
        preemptions=row.preemptions,
        unschedulable=row.unschedulable,
        jobset_api=row.jobset_api,
        host_failure=row.host_failure,
    )


def plan(row: Row, status: dict[str, Any] | None = None) -> Plan:
    intro = parse_introduction(merged(INTRO, **row.spec))
    return plan_introduction(intro, world(row, status), S)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_introduction_plan(row: Row) -> None:
    p = plan(row)
    assert p.state == row.state
    assert row.message in p.message, p.message
    assert tuple(type(a) for a in p.actions) == row.actions
    if row.kinds:
        kinds = tuple(a.body["kind"] if isinstance(a, Create) else a.kind for a in p.actions)
        assert kinds == row.kinds
    assert tuple(type(c) for c in p.claims) == row.claims
    assert tuple(a.counter for a in p.announce if isinstance(a, Count)) == row.counts
    events = [a for a in p.announce if isinstance(a, Event) and a.reason != "Preempted"]
    assert bool(events) is row.event
    for e in events:
        warning = row.state in (api.FAILED, api.PENDING)
        assert (e.reason, e.warning) == (row.reason or row.state, warning)
    assert (p.wakes == ("ml", "vision")) is row.wakes
    committed = {**row.status, **p.status}
    conditions = {c["type"]: c for c in committed["conditions"]}
    assert conditions[row.state]["status"] == "True"
    assert conditions[row.state]["reason"] == (row.reason or row.state)
    assert committed["phase"] == row.state  # derived from the conditions, for printing
    for c in conditions.values():
        assert c["observedGeneration"] == 1 and c["reason"] and "lastTransitionTime" in c
    exclusive = [
        t
        for t in (api.PENDING, api.QUEUED, api.RUNNING, api.SUSPENDED, api.SUCCEEDED, api.FAILED)
        if conditions.get(t, {}).get("status") == "True"
    ]
    assert len(exclusive) <= 1
    again = plan(row, committed)  # the committed status is a fixpoint
    assert again.status == {} and again.announce == () and again.state == row.state


def test_admitted_creates_configmap_then_job_announcing_the_launch() -> None:
    p = plan(ADMITTED)
    cm, jb = p.actions
    assert isinstance(cm, Create) and isinstance(jb, Create)
    assert (cm.body["kind"], jb.body["kind"]) == ("ConfigMap", "Job")
    assert jb.on_created is not None and jb.on_created.reason == "Launched"
    assert p.status["jobName"] == "mti-digits-1" and p.status["startTime"] == NOW
    (claim,) = p.claims
    assert claim == Claim(("ml", "vision"), "digits-1", "digits")


@pytest.mark.parametrize("empty", [True, False])
def test_first_introduction_into_an_empty_store_creates_the_root(empty: bool) -> None:
    """No root bootstrap on the system: the first introduction's trainer creates the root (it
    skips that when the store holds one); the ConfigMap and Job stay the introduction's."""
    cm, jb = plan(replace(ADMITTED, system_status={**READY, "storeEmpty": empty})).actions
    assert isinstance(cm, Create) and isinstance(jb, Create)
    assert IntroduceConfig.from_json(cm.body["data"]["config.json"]).bootstrap_root is empty
    owners = [b["metadata"]["ownerReferences"][0]["name"] for b in (cm.body, jb.body)]
    assert owners == ["digits-1", "digits-1"]


def test_invalid_spec_is_not_accepted() -> None:
    row = next(r for r in ROWS if r.id == "invalid-spec")
    conditions = {c["type"]: c for c in plan(row).status["conditions"]}
    assert conditions[api.ACCEPTED]["status"] == "False"
    assert conditions[api.ACCEPTED]["reason"] == api.FAILED


def test_transitions_keep_times_of_unchanged_conditions() -> None:
    row = next(r for r in ROWS if r.id == "job-running")
    p = plan(row)
    conditions = {c["type"]: c for c in p.status["conditions"]}
    assert conditions[api.ACCEPTED]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert conditions[api.RUNNING]["lastTransitionTime"] == NOW


def test_preemptions_are_counted_and_announced_once() -> None:
    row = next(r for r in ROWS if r.id == "preempted")
    p = plan(row)
    assert p.status["preemptions"] == 2
    (count,) = [a for a in p.announce if isinstance(a, Count)]
    assert count.amount == 2
    assert [a.reason for a in p.announce if isinstance(a, Event)] == ["Preempted"]


def test_no_forgetting_progress_becomes_a_condition() -> None:
    row = replace(
        next(r for r in ROWS if r.id == "succeeded-is-final"),
        status={**state(api.SUCCEEDED), "progress": {"noForgettingVerified": False}},
    )
    conditions = {c["type"]: c for c in plan(row).status["conditions"]}
    assert conditions[api.NO_FORGETTING]["status"] == "False"
    assert conditions[api.NO_FORGETTING]["reason"] == "ForgettingDetected"


def test_a_bad_default_slice_names_the_systems_field() -> None:
    bad = {"type": "tpu", "tpu": {**V5E_4X4["tpu"], "topology": "4x4", "chips": 8}}
    system = merged(SYSTEM, defaults={**SYSTEM["spec"]["defaults"], "accelerator": bad})
    world = Observed(status={}, now=NOW, system=parse_system(system), system_status=READY)
    p = plan_introduction(parse_introduction(INTRO), world, S)
    assert p.state == api.FAILED
    assert "MultitaskSystem vision spec.defaults.accelerator.tpu.chips must be 4" in p.message
