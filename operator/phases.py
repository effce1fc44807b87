"""Pure status logic: Job state -> introduction phase, and the TaskIntroduction status patch.

The operator owns ``status.conditions`` (and phase, jobName, times, observedGeneration); the
trainer owns ``status.progress``. Both write through the /status subresource with merge patches
touching disjoint keys, so neither overwrites the other.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mutask.contract import Progress
from mutask.operator import api
from mutask.operator.objects import find_condition, meta, set_condition, spec, status


def job_condition(job: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    cond = find_condition(status(job).get("conditions") or [], ctype)
    return cond if cond is not None and cond.get("status") == "True" else None


def job_phase(job: Mapping[str, Any], *, kueue: bool) -> tuple[str, str]:
    """(phase, message) of an introduction from its Job (the Job is the source of truth)."""
    done = job_condition(job, "Complete") or job_condition(job, "SuccessCriteriaMet")
    if done:
        return api.SUCCEEDED, "the trainer Job completed"
    failed = job_condition(job, "Failed")
    if failed:
        why = failed.get("reason") or "Failed"
        return api.FAILED, f"the trainer Job failed ({why}): {failed.get('message', '')}".strip()
    st = status(job)
    if spec(job).get("suspend"):
        if kueue:
            return api.QUEUED, "waiting for Kueue to admit the Job"
        return api.SUSPENDED, "the trainer Job is suspended"
    if int(st.get("active") or 0) > 0:
        ready = int(st.get("ready") or 0)
        return api.RUNNING, f"trainer pod running ({ready} ready)"
    return api.ACCEPTED, "trainer Job created; waiting for its pod"


def unschedulable(pod: Mapping[str, Any]) -> str | None:
    """The scheduler's message when ``pod`` cannot be placed on any node (e.g. no such pool)."""
    cond = find_condition(status(pod).get("conditions") or [], "PodScheduled")
    if cond is None or cond.get("status") != "False" or cond.get("reason") != "Unschedulable":
        return None
    return str(cond.get("message") or "no node fits the trainer pod")


def generation_progress(progress: Mapping[str, Any]) -> str | None:
    gen, total = progress.get(Progress.GENERATION), progress.get(Progress.GENERATIONS)
    if gen is None or total is None:
        return None
    return f"{gen}/{total}"


def ti_status(
    ti: Mapping[str, Any],
    phase: str,
    message: str,
    now: str,
    *,
    job_name: str | None = None,
    preemptions: int | None = None,
    accepted: bool = True,
    reason: str | None = None,
) -> dict[str, Any]:
    """The operator-owned part of the TaskIntroduction status after a reconcile (``reason``:
    of the current phase's condition, default the phase itself)."""
    old = status(ti)
    generation = meta(ti).get("generation")
    conditions: list[dict[str, Any]] = [dict(c) for c in old.get("conditions") or []]
    conditions = set_condition(
        conditions,
        api.ACCEPTED,
        accepted,
        api.ACCEPTED if accepted else api.FAILED,
        "spec accepted" if accepted else message,
        now,
        generation,
    )
    for ctype in (api.PENDING, api.QUEUED, api.RUNNING, api.SUSPENDED, api.SUCCEEDED, api.FAILED):
        if ctype == phase:
            why = reason or ctype
            conditions = set_condition(conditions, ctype, True, why, message, now, generation)
        elif find_condition(conditions, ctype) is not None:
            conditions = set_condition(conditions, ctype, False, phase, message, now, generation)
    progress = old.get("progress") or {}
    if progress.get(Progress.NO_FORGETTING_VERIFIED) is not None:
        verified = bool(progress[Progress.NO_FORGETTING_VERIFIED])
        conditions = set_condition(
            conditions,
            api.NO_FORGETTING,
            verified,
            api.NO_FORGETTING if verified else "ForgettingDetected",
            "earlier tasks' accuracy unchanged after publishing"
            if verified
            else "an earlier task's accuracy changed after publishing",
            now,
            generation,
        )
    out: dict[str, Any] = {
        "phase": phase,
        "conditions": conditions,
        "observedGeneration": generation,
    }
    gp = generation_progress(progress)
    if gp is not None:
        out["generationProgress"] = gp
    if job_name is not None:
        out["jobName"] = job_name
    if phase in api.ACTIVE and not old.get("startTime"):
        out["startTime"] = now
    if phase in api.TERMINAL and not old.get("completionTime"):
        out["completionTime"] = now
    if preemptions is not None and preemptions > int(old.get("preemptions") or 0):
        out["preemptions"] = preemptions
    return out


def status_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Keys of ``new`` whose value differs from ``old`` (what a merge patch must carry)."""
    return {k: v for k, v in new.items() if old.get(k) != v}
