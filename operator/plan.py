"""The pure plan of one TaskIntroduction: (spec, observed world) -> actions and status.

No I/O and no clock: everything it needs is in :class:`Observed` (read by reconcile.py), and
everything it decides is in the returned :class:`~mutask.operator.actions.Plan` (performed by
apply.py). Decisions read the conditions, never ``status.phase``.

The state machine (a condition type is True at a time; ``Accepted`` alone means "Job created")::

    no Job   --admitted--> Accepted --pod runs--> Running --Job Complete--> Succeeded
       |  \\--not admitted--> Queued     |   ^ placed     \\--Job Failed-----> Failed
       |   \\--invalid spec--> Failed    v   |
       |       (Accepted=False)       Pending (reason Unschedulable: no node fits the trainer
       |                                       pod; the Job keeps its admission slot)
    spec.suspend --> Suspended (Job suspended, or deleted under Kueue) --resume--> admission
    Succeeded/Failed are final: a finished iteration is never re-run.

The first introduction into an empty store (no root bootstrap on the system) asks the trainer
to create the root first (``bootstrap_root`` in its config; the trainer skips that when the
store already holds one).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mutask.operator import api
from mutask.operator.actions import (
    Action,
    Announcement,
    Claim,
    ClaimChange,
    Count,
    Create,
    DeleteJob,
    Event,
    Plan,
    Release,
    SuspendJob,
)
from mutask.operator.admission import Peer, admit, peer_of
from mutask.operator.conditions import (
    current_state,
    find_condition,
    is_true,
    job_state,
    state_message,
    status_changes,
    ti_status,
    workload_ready,
)
from mutask.operator.config_builder import build_configmap
from mutask.operator.job_builder import build_job
from mutask.operator.jobset_builder import build_jobset, hosts_of, workload_name
from mutask.operator.objects import meta, spec
from mutask.operator.settings import Settings
from mutask.operator.spec import IntroductionSpec, SystemSpec
from mutask.operator.topology import TopologyError
from mutask.trainer.config import ConfigError

JOBSET_MISSING = "JobSetNotInstalled"  # reason of Queued: a multi-host run needs JobSet


@dataclass(frozen=True)
class Observed:
    """What one reconcile read about a TaskIntroduction's world."""

    status: Mapping[str, Any]  # the introduction's own status
    now: str
    job: Mapping[str, Any] | None = None  # its trainer Job, or JobSet for several hosts
    system: SystemSpec | None = None  # its MultitaskSystem (None: not found)
    system_status: Mapping[str, Any] | None = None
    peers: tuple[Peer, ...] = ()  # the system's introductions (with this process's claims)
    preemptions: int = 0  # preempted trainer pods seen
    unschedulable: str | None = None  # the scheduler's message for a trainer pod it cannot place
    jobset_api: bool = True  # the API server serves jobset.x-k8s.io/v1alpha2 (JobSet installed)
    host_failure: str | None = None  # a failed JobSet's failed host Job's message (why it failed)


@dataclass(frozen=True)
class Outcome:
    state: str
    message: str
    job: str | None = None
    accepted: bool = True  # False: the spec itself is invalid
    reason: str | None = None  # of the state's condition, when not the state itself


def admission(intro: IntroductionSpec, world: Observed) -> tuple[bool, str]:
    """System Ready, one active introduction per task, the concurrency limit, oldest first."""
    system = world.system
    if system is None:
        return False, f"MultitaskSystem {intro.system} not found"
    conditions = (world.system_status or {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == api.READY), None)
    if not is_true(conditions, api.READY):
        why = f"{ready.get('reason')}: {ready.get('message')}" if ready else "not reconciled yet"
        return False, f"waiting for MultitaskSystem {intro.system} to be Ready ({why})"
    limit = 1 if (world.system_status or {}).get("storeEmpty") else system.max_concurrent
    return admit(peer_of(intro, world.status), world.peers, limit)


def converge(
    intro: IntroductionSpec, world: Observed, settings: Settings
) -> tuple[Outcome, tuple[Action, ...], tuple[ClaimChange, ...]]:
    """The introduction's next state and what its Job (or JobSet) needs for it."""
    state = current_state(world.status)
    if state in api.TERMINAL:  # final: a finished iteration is never re-run
        conditions = world.status.get("conditions") or []
        refused = (find_condition(conditions, api.ACCEPTED) or {}).get("status") == "False"
        message, job = state_message(world.status, state), world.status.get("jobName")
        return Outcome(state, message, job, accepted=not refused), (), ()
    key, name = intro.system_key, intro.ref.name
    ns = intro.ref.namespace
    job = world.job
    kind, jname = workload_name(intro, world.system)
    if job is not None:  # what exists wins (e.g. created before an upgrade changed the rule)
        kind, jname = str(job.get("kind") or kind), str(meta(job).get("name") or jname)
    what = "trainer JobSet" if kind == "JobSet" else "trainer Job"
    if job is not None and meta(job).get("deletionTimestamp"):
        if intro.suspend:
            return Outcome(api.SUSPENDED, f"suspended; the {what} is stopping", jname), (), ()
        return Outcome(api.QUEUED, f"the previous {what} is still being deleted", jname), (), ()
    if job is not None:
        job_st, message = job_state(job, kueue=intro.queue_name is not None)
        if job_st == api.FAILED and world.host_failure:
            message = f"{message}; {world.host_failure}"
        if job_st in api.TERMINAL:
            return Outcome(job_st, message, jname), (), ()
        if intro.suspend:
            stop: tuple[Action, ...] = ()
            if intro.queue_name:  # Kueue owns .spec.suspend: stop by deleting (pods get SIGTERM)
                stop = (DeleteJob(ns, jname, kind),)
            elif not spec(job).get("suspend"):
                stop = (SuspendJob(ns, jname, True, kind),)
            suspended = Outcome(
                api.SUSPENDED, "suspended by spec.suspend; the trainer checkpoints", jname
            )
            return suspended, stop, (Release(key, name),)
        if job_st == api.SUSPENDED:  # resume a Job we suspended: admission applies again
            ok, why = admission(intro, world)
            if not ok:
                return Outcome(api.QUEUED, why, jname), (), ()
            resumed = Outcome(api.ACCEPTED, "resumed; waiting for the trainer pod", jname)
            return resumed, (SuspendJob(ns, jname, False, kind),), (Claim(key, name, intro.task),)
        ready = workload_ready(job)
        if job_st in api.ACTIVE and world.unschedulable and not ready:
            # e.g. no node pool with the requested accelerator: say so, never wait mute
            why = f"trainer pod unschedulable: {world.unschedulable}"
            return Outcome(api.PENDING, why, jname, reason=api.UNSCHEDULABLE), (), ()
        return Outcome(job_st, message, jname), (), ()
    if intro.suspend:
        return Outcome(api.SUSPENDED, "suspended before start"), (), (Release(key, name),)
    ok, why = admission(intro, world)
    if not ok or world.system is None:
        return Outcome(api.QUEUED, why), (), ()
    empty = bool((world.system_status or {}).get("storeEmpty"))  # this one creates the root
    try:
        hosts = hosts_of(intro, world.system)
        configmap = build_configmap(world.system, intro, settings, creates_root=empty)
        if hosts > 1:
            job_body = build_jobset(world.system, intro, settings, hosts)
        else:
            job_body = build_job(world.system, intro, settings)
    except (ConfigError, TopologyError) as err:
        invalid = Outcome(api.FAILED, f"invalid spec: {err}", None, accepted=False)
        return invalid, (), (Release(key, name),)
    if hosts > 1 and not world.jobset_api:
        why = (
            f"{hosts} hosts run as a JobSet, but this cluster does not serve "
            "jobset.x-k8s.io/v1alpha2: install JobSet (v0.11 or later)"
        )
        return Outcome(api.QUEUED, why, reason=JOBSET_MISSING), (), ()
    launched = Event(intro.ref, "Launched", f"created {what} {jname}")
    create = (Create(configmap), Create(job_body, on_created=launched))
    waiting = f"waiting for its {hosts} pods" if hosts > 1 else "waiting for its pod"
    created = Outcome(api.ACCEPTED, f"{what} created; {waiting}", jname)
    return created, create, (Claim(key, name, intro.task),)


def plan_introduction(intro: IntroductionSpec, world: Observed, settings: Settings) -> Plan:
    """Decide everything one reconcile of ``intro`` does (see the module docstring)."""
    out, actions, claims = converge(intro, world, settings)
    old = world.status
    new = ti_status(
        old,
        intro.ref.generation,
        out.state,
        out.message,
        world.now,
        job_name=out.job,
        preemptions=world.preemptions,
        accepted=out.accepted,
        reason=out.reason,
    )
    announce: list[Announcement] = []
    old_state = current_state(old)
    frees = False
    if out.state != old_state:
        warn = out.state in (api.FAILED, api.PENDING)
        announce.append(Event(intro.ref, out.reason or out.state, out.message, warning=warn))
        if out.state == api.FAILED and out.job:
            announce.append(Count("jobs_failed"))
        if out.state in api.TERMINAL | {api.SUSPENDED}:
            claims = (*claims, Release(intro.system_key, intro.ref.name))
            frees = old_state in api.ACTIVE
    old_preempted = int(old.get("preemptions") or 0)
    if world.preemptions > old_preempted:
        announce.append(Count("jobs_preempted", world.preemptions - old_preempted))
        announce.append(
            Event(
                intro.ref,
                "Preempted",
                f"trainer pod disrupted ({world.preemptions} in all); retrying",
                warning=True,
            )
        )
    return Plan(
        target=intro.ref,
        state=out.state,
        message=out.message,
        actions=actions,
        status=status_changes(old, new),
        announce=tuple(announce),
        claims=claims,
        wakes=intro.system_key if frees else None,
    )
