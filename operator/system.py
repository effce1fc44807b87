"""Level-based reconciliation of one MultitaskSystem: storage reachable? root ready (bootstrap
Job when the store is empty and a bootstrap task is given)? plus the published-task summary.

A ``file://`` store on a PersistentVolumeClaim lives on a volume only the trainer pods mount,
so the operator checks the claim (exists, not Lost) instead of a path, and knows the store
holds a root only once it has seen the root ready (the bootstrap Job succeeded).

The summary is derived from the system's succeeded TaskIntroductions (their trainer-reported
progress); the store itself stays the source of truth for weights, which the operator never
writes or deletes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlparse

from mutask import contract
from mutask.contract import Progress
from mutask.operator import api, metrics
from mutask.operator.admission import Peer
from mutask.operator.config_builder import bootstrap_introduction, build_configmap
from mutask.operator.context import Context
from mutask.operator.job_builder import build_job
from mutask.operator.kube import core_path, job_path, mts_path
from mutask.operator.objects import find_condition, job_name, meta, set_condition, spec, status
from mutask.operator.phases import job_phase, status_changes
from mutask.operator.storage import ProbeResult
from mutask.trainer.config import ConfigError


def summarize(peers: Iterable[Peer]) -> dict[str, Any]:
    """Published tasks (latest succeeded introduction per task) and the active count."""
    peers = list(peers)
    latest: dict[str, Peer] = {}
    for p in peers:
        if p.phase == api.SUCCEEDED:
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
        "activeIntroductions": sum(1 for p in peers if p.phase in api.ACTIVE),
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


def probe_storage(ctx: Context, system: dict[str, Any], old: Mapping[str, Any]) -> ProbeResult:
    """Is the system's store reachable, and is it empty (see the module docstring)?"""
    storage = spec(system).get("storage") or {}
    uri = str(storage.get("uri", ""))
    claim = (storage.get("persistentVolumeClaim") or {}).get("claimName")
    if not claim or urlparse(uri).scheme != "file":
        return ctx.prober(uri)
    ns = str(meta(system).get("namespace"))
    pvc = ctx.kube.get(core_path(ns, "persistentvolumeclaims", str(claim)))
    if pvc is None:
        return ProbeResult(False, True, f"PersistentVolumeClaim {ns}/{claim} not found")
    phase = str(status(pvc).get("phase") or "Pending")
    if phase == "Lost":
        return ProbeResult(False, True, f"PersistentVolumeClaim {ns}/{claim} is Lost")
    root = find_condition(old.get("conditions") or [], api.ROOT_READY) or {}
    rooted = root.get("status") == "True" and root.get("reason") in ("Bootstrapped", "Published")
    seen = "holds the root" if rooted else "is taken as empty until a root is published"
    return ProbeResult(
        True, not rooted, f"PersistentVolumeClaim {claim} is {phase}; the store on it {seen}"
    )


def _root(ctx: Context, system: dict[str, Any], empty: bool) -> tuple[bool, str, str, str | None]:
    """(root ready, reason, message, bootstrap Job name) — creates the bootstrap Job if needed."""
    if not empty:
        return True, "Published", "the store holds published state", None
    boot = (spec(system).get("rootModel") or {}).get("bootstrap")
    if not boot:
        return True, "Empty", "empty store: the first introduction initialises the root", None
    intro = bootstrap_introduction(system)
    ns = str(meta(system).get("namespace"))
    jname = job_name(str(meta(intro).get("name")))
    job = ctx.kube.get(job_path(ns, jname))
    if job is None:
        try:
            configmap = build_configmap(system, intro, ctx.settings, bootstrap_root=True)
            body = build_job(system, intro, ctx.settings, bootstrap_root=True)
        except ConfigError as err:
            return False, "Failed", f"invalid bootstrap: {err}", None
        ctx.kube.create(core_path(ns, "configmaps"), configmap)
        job, created = ctx.kube.create(job_path(ns), body)
        if created:
            metrics.JOBS_LAUNCHED.inc()
            ctx.kube.post_event(system, "Bootstrapping", f"created root bootstrap Job {jname}")
    phase, message = job_phase(job, kueue=False)
    if phase == api.SUCCEEDED:
        return True, "Bootstrapped", f"root trained on task {boot.get('task')}", jname
    if phase == api.FAILED:
        return False, "Failed", message, jname
    return False, "Bootstrapping", f"training the root on task {boot.get('task')}: {message}", jname


def reconcile_system(ctx: Context, namespace: str, name: str) -> dict[str, Any] | None:
    """Converge one system's status; returns the status written (None when it is gone)."""
    with metrics.timed("MultitaskSystem"), ctx.locks.hold(("mts", namespace, name)):
        system = ctx.kube.get(mts_path(namespace, name))
        if system is None or meta(system).get("deletionTimestamp"):
            return None
        system.setdefault("apiVersion", contract.API_VERSION)
        system.setdefault("kind", contract.MTS_KIND)
        old = status(system)
        now, generation = ctx.clock(), meta(system).get("generation")
        probe = probe_storage(ctx, system, old)
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
        boot_job: str | None = None
        if probe.reachable:
            root_ok, reason, message, boot_job = _root(ctx, system, probe.empty)
        else:
            root_ok, reason, message = False, "Unreachable", probe.message
        conds = set_condition(conds, api.ROOT_READY, root_ok, reason, message, now, generation)
        ready = probe.reachable and root_ok
        conds = set_condition(
            conds, api.READY, ready, "Ready" if ready else reason, message, now, generation
        )
        new: dict[str, Any] = {
            "observedGeneration": generation,
            "conditions": conds,
            "storeEmpty": bool(probe.reachable and probe.empty and not boot_job),
            **summarize(ctx.peers(namespace, name)),
        }
        if boot_job:
            new["bootstrapJob"] = boot_job
        changes = status_changes(old, new)
        if changes:
            ctx.kube.merge_patch(mts_path(namespace, name) + "/status", {"status": changes})
        was = find_condition(old.get("conditions") or [], api.READY)
        if (
            was is None
            or (was.get("status") == "True") != ready
            or was.get("reason") != ("Ready" if ready else reason)
        ):
            ctx.kube.post_event(system, "Ready" if ready else reason, message, warning=not ready)
        return new
