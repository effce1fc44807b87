"""Level-based reconciliation of one TaskIntroduction: read everything, decide, converge.

Safe to run any number of times, from any trigger (watch event, periodic resync, operator
restart): the Job and ConfigMap have deterministic names and are created get-before-create
with 409 handling, so a second run finds them instead of duplicating them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from mutask import contract
from mutask.operator import api, metrics
from mutask.operator.admission import admit, peer_from_body
from mutask.operator.config_builder import build_configmap
from mutask.operator.context import Context
from mutask.operator.job_builder import build_job
from mutask.operator.kube import core_path, job_path, mts_path, ti_path
from mutask.operator.objects import find_condition, job_name, meta, spec, status
from mutask.operator.phases import job_phase, status_changes, ti_status, unschedulable
from mutask.trainer.config import ConfigError

log = logging.getLogger(__name__)
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"  # set by the Job controller on its pods


class Decision:
    """The outcome of one decide step."""

    def __init__(
        self, phase: str, message: str, job: str | None = None, accepted: bool = True
    ) -> None:
        self.phase, self.message, self.job, self.accepted = phase, message, job, accepted
        self.reason: str | None = None  # of the phase's condition, when not the phase itself
        self.freed = False  # set when this run ended an active introduction (wake its peers)


def system_key(ti: Mapping[str, Any]) -> tuple[str, str]:
    ref = spec(ti).get("systemRef") or {}
    return (str(meta(ti).get("namespace")), str(ref.get("name", "")))


def reconcile_introduction(ctx: Context, namespace: str, name: str) -> Decision | None:
    """Converge one introduction; returns the decision (None when it is gone)."""
    with metrics.timed("TaskIntroduction"), ctx.locks.hold(("ti", namespace, name)):
        ti = ctx.kube.get(ti_path(namespace, name))
        if ti is None or meta(ti).get("deletionTimestamp"):
            return None
        ti.setdefault("apiVersion", contract.API_VERSION)
        ti.setdefault("kind", contract.TI_KIND)
        decision = decide(ctx, ti)
        write_status(ctx, ti, decision)
        return decision


def _current_message(ti: Mapping[str, Any], phase: str) -> str:
    cond = find_condition(status(ti).get("conditions") or [], phase)
    return str(cond.get("message", "")) if cond else ""


def decide(ctx: Context, ti: dict[str, Any]) -> Decision:
    st, sp = status(ti), spec(ti)
    ns, name = str(meta(ti).get("namespace")), str(meta(ti).get("name"))
    old_phase = st.get("phase")
    key = system_key(ti)
    if old_phase in api.TERMINAL:  # sticky: a finished iteration is never re-run
        return Decision(str(old_phase), _current_message(ti, str(old_phase)), st.get("jobName"))
    jname = job_name(name)
    kueue = bool(sp.get("queueName"))
    job = ctx.kube.get(job_path(ns, jname))
    if job is not None and meta(job).get("deletionTimestamp"):
        if sp.get("suspend"):
            return Decision(api.SUSPENDED, "suspended; the trainer Job is stopping", jname)
        return Decision(api.QUEUED, "the previous trainer Job is still being deleted", jname)
    if job is not None:
        phase, message = job_phase(job, kueue=kueue)
        if phase in api.TERMINAL:
            return Decision(phase, message, jname)
        if phase in api.ACTIVE and not sp.get("suspend") and not int(status(job).get("ready") or 0):
            pods = ctx.kube.list(core_path(ns, "pods"), {JOB_NAME_LABEL: jname})
            why = next((w for w in map(unschedulable, pods) if w), None)
            if why:  # e.g. no node pool with the requested accelerator: say so, never wait mute
                pending = Decision(api.PENDING, f"trainer pod unschedulable: {why}", jname)
                pending.reason = "Unschedulable"
                return pending
        if sp.get("suspend"):
            if kueue:  # Kueue owns .spec.suspend: stop by deleting (pods get SIGTERM)
                ctx.kube.delete(job_path(ns, jname), propagation="Foreground")
            elif not spec(job).get("suspend"):
                ctx.kube.merge_patch(job_path(ns, jname), {"spec": {"suspend": True}})
            ctx.claims.release(key, name)
            return Decision(
                api.SUSPENDED, "suspended by spec.suspend; the trainer checkpoints", jname
            )
        if phase == api.SUSPENDED:  # resume a Job we suspended: admission applies again
            ok, why, _ = _admit(ctx, ti)
            if not ok:
                return Decision(api.QUEUED, why, jname)
            ctx.kube.merge_patch(job_path(ns, jname), {"spec": {"suspend": False}})
            return Decision(api.ACCEPTED, "resumed; waiting for the trainer pod", jname)
        return Decision(phase, message, jname)
    if sp.get("suspend"):
        ctx.claims.release(key, name)
        return Decision(api.SUSPENDED, "suspended before start")
    ok, why, system = _admit(ctx, ti)
    if not ok or system is None:
        return Decision(api.QUEUED, why)
    system.setdefault("apiVersion", contract.API_VERSION)
    system.setdefault("kind", contract.MTS_KIND)
    try:
        empty = bool(status(system).get("storeEmpty"))  # the first introduction makes the root
        configmap = build_configmap(system, ti, ctx.settings, init_root=empty)
        job_body = build_job(system, ti, ctx.settings)
    except ConfigError as err:
        ctx.claims.release(key, name)
        return Decision(api.FAILED, f"invalid spec: {err}", None, accepted=False)
    ctx.kube.create(core_path(ns, "configmaps"), configmap)
    _, created = ctx.kube.create(job_path(ns), job_body)
    if created:
        metrics.JOBS_LAUNCHED.inc()
        ctx.kube.post_event(ti, "Launched", f"created trainer Job {jname}")
    return Decision(api.ACCEPTED, "trainer Job created; waiting for its pod", jname)


def _admit(ctx: Context, ti: Mapping[str, Any]) -> tuple[bool, str, dict[str, Any] | None]:
    """System readiness, then one-per-task and the concurrency limit (claims the slot if ok)."""
    key = system_key(ti)
    system = ctx.kube.get(mts_path(*key))
    if system is None:
        return False, f"MultitaskSystem {key[1]} not found", None
    ready = find_condition(status(system).get("conditions") or [], api.READY)
    if ready is None or ready.get("status") != "True":
        why = f"{ready.get('reason')}: {ready.get('message')}" if ready else "not reconciled yet"
        return False, f"waiting for MultitaskSystem {key[1]} to be Ready ({why})", None
    limit = int(spec(system).get("maxConcurrentIntroductions") or 4)
    if status(system).get("storeEmpty"):
        limit = 1  # the first introduction initialises the root: nobody else meanwhile
    me = peer_from_body(ti)
    with ctx.claims.admission_lock:
        peers = ctx.claims.overlay(key, ctx.peers(*key))
        ok, why = admit(me, peers, limit)
        if ok:
            ctx.claims.claim(key, me.name, me.task)
    return ok, why, system


def write_status(ctx: Context, ti: Mapping[str, Any], decision: Decision) -> None:
    """Patch the operator-owned status keys that changed; events and metrics on transitions."""
    ns, name = str(meta(ti).get("namespace")), str(meta(ti).get("name"))
    old = status(ti)
    preempted = ctx.preemptions(ns, name)
    new = ti_status(
        ti,
        decision.phase,
        decision.message,
        ctx.clock(),
        job_name=decision.job,
        preemptions=preempted,
        accepted=decision.accepted,
        reason=decision.reason,
    )
    changes = status_changes(old, new)
    if changes:
        ctx.kube.merge_patch(ti_path(ns, name) + "/status", {"status": changes})
    old_phase = old.get("phase")
    if decision.phase != old_phase:
        warning = decision.phase == api.FAILED
        ctx.kube.post_event(ti, decision.phase, decision.message, warning=warning)
        if decision.phase == api.FAILED and decision.job:
            metrics.JOBS_FAILED.inc()
        if decision.phase in api.TERMINAL | {api.SUSPENDED}:
            ctx.claims.release(system_key(ti), name)
            decision.freed = old_phase in api.ACTIVE
    old_preempted = int(old.get("preemptions") or 0)
    if preempted > old_preempted:
        metrics.JOBS_PREEMPTED.inc(preempted - old_preempted)
        ctx.kube.post_event(
            ti, "Preempted", f"trainer pod disrupted ({preempted} in all); retrying", warning=True
        )
