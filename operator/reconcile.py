"""One reconcile: read the world -> pure plan -> apply, for a TaskIntroduction or a system.

Safe to run any number of times, from any trigger (watch event, kopf timer, operator restart),
and concurrently for one object: children have deterministic names and are created
get-before-create with 409 handling, and the status commit carries the resourceVersion that was
read, so a stale plan is refused by the API server instead of overwriting a newer one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlparse

from mutask import contract
from mutask.operator import api, metrics
from mutask.operator.actions import Claim, Plan
from mutask.operator.apply import apply
from mutask.operator.conditions import current_state, job_condition
from mutask.operator.context import Context, Indexes
from mutask.operator.jobset_builder import REPLICATED_JOB, workload_name
from mutask.operator.kube import (
    JOBSET_GROUP_VERSION,
    core_path,
    job_path,
    mts_path,
    path_of,
    ti_path,
)
from mutask.operator.objects import meta, status
from mutask.operator.plan import Observed, plan_introduction
from mutask.operator.spec import (
    IntroductionSpec,
    SystemSpec,
    bootstrap_introduction,
    parse_introduction,
    parse_system,
)
from mutask.operator.system_plan import ClaimSeen, ProbeResult, SystemObserved, plan_system


def reconcile_introduction(ctx: Context, idx: Indexes, namespace: str, name: str) -> Plan | None:
    """Converge one introduction; returns the committed plan (None: gone, or refused as stale)."""
    with metrics.timed(contract.TI_KIND):
        body = ctx.kube.get(ti_path(namespace, name))
        if body is None or meta(body).get("deletionTimestamp"):
            return None
        intro = parse_introduction(body)
        world = observe_introduction(ctx, idx, intro, status(body))
        key = intro.system_key
        with ctx.claims.admission_lock:  # the claim book matches what this plan saw
            peers = tuple(ctx.claims.overlay(key, idx.peers(*key)))
            plan = plan_introduction(intro, replace(world, peers=peers), ctx.settings)
            for change in plan.claims:
                if isinstance(change, Claim):
                    ctx.claims.claim(change.system_key, change.name, change.task)
                else:
                    ctx.claims.release(change.system_key, change.name)
        return plan if apply(ctx.kube, plan) else None


def observe_introduction(
    ctx: Context, idx: Indexes, intro: IntroductionSpec, ti_status: Mapping[str, Any]
) -> Observed:
    """Read the introduction's Job, or JobSet for several hosts (not for a finished one: nothing
    can change it); its system and its unschedulable pods come from kopf's indexes (the watch
    streams' view, no GET). Without its JobSet, whether the API server serves JobSets at all."""
    ns = intro.ref.namespace
    world = Observed(
        status=ti_status, now=ctx.clock(), preemptions=idx.preemptions(ns, intro.ref.name)
    )
    if current_state(ti_status) in api.TERMINAL:
        return world
    system, system_status = idx.system(ns, intro.system) or (None, None)
    kind, name = workload_name(intro, system)
    job = ctx.kube.get(path_of(kind, ns, name))
    jobset_api = kind != "JobSet" or job is not None or ctx.kube.serves(JOBSET_GROUP_VERSION)
    return replace(
        world,
        job=job,
        jobset_api=jobset_api,
        host_failure=observe_host_failure(ctx, job),
        system=system,
        system_status=system_status,
        unschedulable=idx.unschedulable(ns, intro.ref.name),
    )


def observe_host_failure(ctx: Context, jobset: Mapping[str, Any] | None) -> str | None:
    """Why a failed JobSet failed: its host Job's failure message (e.g. the exit code of the
    pod that failed it), which the JobSet's own condition does not repeat."""
    if jobset is None or jobset.get("kind") != "JobSet" or not job_condition(jobset, "Failed"):
        return None
    name = f"{meta(jobset).get('name')}-{REPLICATED_JOB}-0"
    host_job = ctx.kube.get(job_path(str(meta(jobset).get("namespace")), name))
    failed = job_condition(host_job, "Failed") if host_job else None
    return f"{name}: {failed.get('message')}" if failed and failed.get("message") else None


def reconcile_system(ctx: Context, idx: Indexes, namespace: str, name: str) -> Plan | None:
    """Converge one system's status; returns the committed plan (None: gone or stale)."""
    with metrics.timed(contract.MTS_KIND):
        body = ctx.kube.get(mts_path(namespace, name))
        if body is None or meta(body).get("deletionTimestamp"):
            return None
        system = parse_system(body)
        world = SystemObserved(
            status=status(body),
            now=ctx.clock(),
            storage=observe_storage(ctx, system),
            peers=tuple(idx.peers(namespace, name)),
        )
        boot, jobset_api = observe_bootstrap_job(ctx, system)
        world = replace(world, bootstrap_job=boot, jobset_api=jobset_api)
        plan = plan_system(system, world, ctx.settings)
        return plan if apply(ctx.kube, plan) else None


def observe_storage(ctx: Context, system: SystemSpec) -> ProbeResult | ClaimSeen:
    """The store's claim for a ``file://`` store on one (the operator cannot mount it), else a
    probe of the store itself."""
    if system.claim_name and urlparse(system.storage_uri).scheme == "file":
        path = core_path(system.ref.namespace, "persistentvolumeclaims", system.claim_name)
        claim = ctx.kube.get(path)
        phase = str(status(claim).get("phase") or "Pending") if claim else None
        return ClaimSeen(system.claim_name, phase)
    return ctx.prober(system.storage_uri)


def observe_bootstrap_job(ctx: Context, system: SystemSpec) -> tuple[dict[str, Any] | None, bool]:
    """The root bootstrap's Job (or JobSet, on a multi-host default accelerator), and whether
    JobSets are served when it needs one that does not exist yet."""
    if system.bootstrap is None:
        return None, True
    kind, name = workload_name(bootstrap_introduction(system), system)
    job = ctx.kube.get(path_of(kind, system.ref.namespace, name))
    return job, kind != "JobSet" or job is not None or ctx.kube.serves(JOBSET_GROUP_VERSION)
