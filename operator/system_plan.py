"""The pure plan of one MultitaskSystem: storage reachable? root ready (bootstrap Job when the
store is empty and a bootstrap task is given)? plus the summary of its published tasks.

A ``file://`` store on a PersistentVolumeClaim lives on a volume only the trainer pods mount,
so the operator checks the claim (exists, not Lost) instead of a path, and knows the store
holds a root only once it has seen the root ready (the bootstrap Job succeeded).

The summary is derived from the system's succeeded TaskIntroductions (their trainer-reported
progress); the store itself stays the source of truth for weights, which the operator never
writes or deletes. No I/O: what was read is in :class:`SystemObserved`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mutask.contract import Progress
from mutask.operator import api
from mutask.operator.actions import Action, Create, Event, Plan
from mutask.operator.admission import Peer
from mutask.operator.conditions import find_condition, job_state, set_condition, status_changes
from mutask.operator.config_builder import build_configmap
from mutask.operator.job_builder import build_job
from mutask.operator.jobset_builder import build_jobset, hosts_of, workload_name
from mutask.operator.settings import Settings
from mutask.operator.spec import SystemSpec, bootstrap_introduction
from mutask.operator.topology import TopologyError
from mutask.trainer.config import ConfigError


@dataclass(frozen=True)
class ProbeResult:
    """A store's reachability: can the operator reach it, and does it hold nothing yet?"""

    reachable: bool
    empty: bool
    message: str


@dataclass(frozen=True)
class ClaimSeen:
    """The store's PersistentVolumeClaim as read through the API (``phase`` None: not found)."""

    name: str
    phase: str | None


@dataclass(frozen=True)
class SystemObserved:
    """What one reconcile read about a MultitaskSystem's world."""

    status: Mapping[str, Any]
    now: str
    storage: ProbeResult | ClaimSeen  # a probe of the store, or its claim
    bootstrap_job: Mapping[str, Any] | None = None  # a Job, or a JobSet for several hosts
    peers: tuple[Peer, ...] = ()
    jobset_api: bool = True  # the API server serves jobset.x-k8s.io/v1alpha2


def summarize(peers: Iterable[Peer]) -> dict[str, Any]:
    """Published tasks (latest succeeded introduction per task) and the active count."""
    peers = list(peers)
    latest: dict[str, Peer] = {}
    for p in peers:
        if p.state == api.SUCCEEDED:
            prev = latest.get(p.task)
            if prev is None or (p.completion_time or "", p.name) > (
                prev.completion_time or "",
                prev.name,
            ):
                latest[p.task] = p
    task_params: dict[str, dict[str, Any]] = {}
    for task, p in sorted(latest.items()):
        entry: dict[str, Any] = {"introduction": p.name}
        for key in (Progress.PARAMS_ADDED, Progress.ACCOUNTED_PARAMS, Progress.TEST_ACCURACY):
            if p.progress.get(key) is not None:
                entry[key] = p.progress[key]
        if p.completion_time:
            entry["completionTime"] = p.completion_time
        task_params[task] = entry
    out: dict[str, Any] = {
        "tasks": sorted(latest),
        "taskCount": len(latest),
        "taskParams": task_params,
        "activeIntroductions": sum(1 for p in peers if p.state in api.ACTIVE),
    }
    newest = max(latest.values(), key=lambda p: (p.completion_time or "", p.name), default=None)
    if newest is not None:
        out["lastPublish"] = newest.completion_time
        reported = newest.progress.get(Progress.SYSTEM_PARAMS)
        out["totalParams"] = (
            int(reported)
            if reported is not None
            else sum(int(p.progress.get(Progress.PARAMS_ADDED) or 0) for p in latest.values())
        )
        if newest.progress.get(Progress.COMPONENT_COUNT) is not None:
            out["componentCount"] = int(newest.progress[Progress.COMPONENT_COUNT])
    return {k: v for k, v in out.items() if v is not None}


def storage_state(
    system: SystemSpec, seen: ProbeResult | ClaimSeen, old: Mapping[str, Any]
) -> ProbeResult:
    """Is the store reachable, and is it empty (see the module docstring)?"""
    if isinstance(seen, ProbeResult):
        return seen
    ns = system.ref.namespace
    if seen.phase is None:
        return ProbeResult(False, True, f"PersistentVolumeClaim {ns}/{seen.name} not found")
    if seen.phase == "Lost":
        return ProbeResult(False, True, f"PersistentVolumeClaim {ns}/{seen.name} is Lost")
    root = find_condition(old.get("conditions") or [], api.ROOT_READY) or {}
    rooted = root.get("status") == "True" and root.get("reason") in ("Bootstrapped", "Published")
    held = "holds the root" if rooted else "is taken as empty until a root is published"
    return ProbeResult(
        True,
        not rooted,
        f"PersistentVolumeClaim {seen.name} is {seen.phase}; the store on it {held}",
    )


@dataclass(frozen=True)
class Root:
    ready: bool
    reason: str
    message: str
    job: str | None = None
    actions: tuple[Action, ...] = ()


def root(system: SystemSpec, world: SystemObserved, settings: Settings, empty: bool) -> Root:
    """Root readiness; creates the bootstrap Job when the store is empty and one is asked for."""
    if not empty:
        return Root(True, "Published", "the store holds published state")
    if system.bootstrap is None:
        return Root(True, "Empty", "empty store: the first introduction initialises the root")
    task = system.bootstrap.get("task")
    intro = bootstrap_introduction(system)
    kind, jname = workload_name(intro, system)
    job = world.bootstrap_job
    actions: tuple[Action, ...] = ()
    if job is None:
        try:
            hosts = hosts_of(intro, system)
            configmap = build_configmap(system, intro, settings, bootstrap_root=True)
            if hosts > 1:  # the default accelerator spans several hosts: a JobSet
                job = build_jobset(system, intro, settings, hosts, bootstrap_root=True)
            else:
                job = build_job(system, intro, settings, bootstrap_root=True)
        except (ConfigError, TopologyError) as err:
            return Root(False, "Failed", f"invalid bootstrap: {err}")
        if hosts > 1 and not world.jobset_api:
            why = (
                f"the root bootstrap's {hosts} hosts run as a JobSet, but this cluster does "
                "not serve jobset.x-k8s.io/v1alpha2: install JobSet (v0.11 or later)"
            )
            return Root(False, "JobSetNotInstalled", why)
        created = Event(system.ref, "Bootstrapping", f"created root bootstrap {kind} {jname}")
        actions = (Create(configmap), Create(job, on_created=created))
    state, message = job_state(job, kueue=False)
    if state == api.SUCCEEDED:
        return Root(True, "Bootstrapped", f"root trained on task {task}", jname, actions)
    if state == api.FAILED:
        return Root(False, "Failed", message, jname, actions)
    training = f"training the root on task {task}: {message}"
    return Root(False, "Bootstrapping", training, jname, actions)


def plan_system(system: SystemSpec, world: SystemObserved, settings: Settings) -> Plan:
    """Decide everything one reconcile of ``system`` does."""
    old, now, generation = world.status, world.now, system.ref.generation
    probe = storage_state(system, world.storage, old)
    conds: list[dict[str, Any]] = [dict(c) for c in old.get("conditions") or []]
    conds = set_condition(
        conds,
        api.STORAGE_REACHABLE,
        probe.reachable,
        "Reachable" if probe.reachable else "Unreachable",
        probe.message,
        now,
        generation,
    )
    if probe.reachable:
        r = root(system, world, settings, probe.empty)
    else:
        r = Root(False, "Unreachable", probe.message)
    conds = set_condition(conds, api.ROOT_READY, r.ready, r.reason, r.message, now, generation)
    ready = probe.reachable and r.ready
    reason = "Ready" if ready else r.reason
    conds = set_condition(conds, api.READY, ready, reason, r.message, now, generation)
    new: dict[str, Any] = {
        "observedGeneration": generation,
        "conditions": conds,
        "storeEmpty": bool(probe.reachable and probe.empty and not r.job),
        **summarize(world.peers),
    }
    if r.job:
        new["bootstrapJob"] = r.job
    was = find_condition(old.get("conditions") or [], api.READY)
    changed = was is None or (was.get("status") == "True") != ready or was.get("reason") != reason
    announce = (Event(system.ref, reason, r.message, warning=not ready),) if changed else ()
    return Plan(
        target=system.ref,
        state=api.READY if ready else reason,
        message=r.message,
        actions=r.actions,
        status=status_changes(old, new),
        announce=announce,
    )
