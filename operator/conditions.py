"""Pure status logic: conditions (authoritative), the state they say, Job -> state, TI status.

The operator owns ``status.conditions`` (with type, status, reason, message,
lastTransitionTime and observedGeneration, as JobSet and Kueue write them); every decision
reads the conditions. ``status.phase`` is derived from them for ``kubectl get`` only. The trainer
owns ``status.progress``. Both write through the /status subresource with merge patches on
disjoint keys, so neither overwrites the other.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from mutask.contract import Progress
from mutask.operator import api
from mutask.operator.objects import spec, status

# Condition types that are True one at a time (the "state"), most decisive first.
EXCLUSIVE = (api.FAILED, api.SUCCEEDED, api.SUSPENDED, api.RUNNING, api.PENDING, api.QUEUED)


def find_condition(conditions: Sequence[Mapping[str, Any]], ctype: str) -> Mapping[str, Any] | None:
    for cond in conditions:
        if cond.get("type") == ctype:
            return cond
    return None


def is_true(conditions: Sequence[Mapping[str, Any]], ctype: str) -> bool:
    cond = find_condition(conditions, ctype)
    return cond is not None and cond.get("status") == "True"


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    ctype: str,
    status_value: bool,
    reason: str,
    message: str,
    now: str,
    generation: int | None = None,
) -> list[dict[str, Any]]:
    """Return a new condition list with ``ctype`` set; lastTransitionTime moves only on change."""
    out: list[dict[str, Any]] = []
    found = False
    text = "True" if status_value else "False"
    for cond in conditions:
        c = dict(cond)
        if c.get("type") == ctype:
            found = True
            if c.get("status") != text:
                c["lastTransitionTime"] = now
            c.update(status=text, reason=reason, message=message)
            if generation is not None:
                c["observedGeneration"] = generation
        out.append(c)
    if not found:
        new: dict[str, Any] = {
            "type": ctype,
            "status": text,
            "reason": reason,
            "message": message,
            "lastTransitionTime": now,
        }
        if generation is not None:
            new["observedGeneration"] = generation
        out.append(new)
    return out


def state_of(conditions: Sequence[Mapping[str, Any]]) -> str:
    """The introduction's state, read from its conditions (what ``status.phase`` prints)."""
    for ctype in EXCLUSIVE:
        if is_true(conditions, ctype):
            return ctype
    return api.ACCEPTED if is_true(conditions, api.ACCEPTED) else api.NEW


def current_state(ti_status: Mapping[str, Any]) -> str:
    return state_of(ti_status.get("conditions") or [])


def state_message(ti_status: Mapping[str, Any], state: str) -> str:
    cond = find_condition(ti_status.get("conditions") or [], state)
    return str(cond.get("message", "")) if cond else ""


def job_condition(job: Mapping[str, Any], ctype: str) -> Mapping[str, Any] | None:
    cond = find_condition(status(job).get("conditions") or [], ctype)
    return cond if cond is not None and cond.get("status") == "True" else None


def job_state(job: Mapping[str, Any], *, kueue: bool) -> tuple[str, str]:
    """(state, message) of an introduction from its Job or JobSet (the source of truth)."""
    if job.get("kind") == "JobSet":
        return jobset_state(job, kueue=kueue)
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


def jobset_state(jobset: Mapping[str, Any], *, kueue: bool) -> tuple[str, str]:
    """(state, message) of a multi-host introduction from its JobSet."""
    st = status(jobset)
    restarts = int(st.get("restarts") or 0)
    again = f"; the set restarted {restarts} time(s)" if restarts else ""
    if job_condition(jobset, "Completed"):
        return api.SUCCEEDED, f"the trainer JobSet completed{again}"
    failed = job_condition(jobset, "Failed")
    if failed:
        why = failed.get("reason") or "Failed"
        detail = f": {failed['message']}" if failed.get("message") else ""
        return api.FAILED, f"the trainer JobSet failed ({why}){detail}{again}"
    if spec(jobset).get("suspend"):
        if kueue:
            return api.QUEUED, "waiting for Kueue to admit the JobSet"
        return api.SUSPENDED, "the trainer JobSet is suspended"
    jobs = st.get("replicatedJobsStatus") or []
    if any(int(j.get("active") or 0) or int(j.get("ready") or 0) for j in jobs):
        hosts = sum(int(j.get("ready") or 0) for j in jobs)
        ready = "all hosts ready" if hosts else "waiting for every host"
        return api.RUNNING, f"trainer pods running ({ready}{again})"
    return api.ACCEPTED, f"trainer JobSet created; waiting for its pods{again}"


def workload_ready(job: Mapping[str, Any]) -> int:
    """Ready pods of a Job; ready Jobs (every host's pod ready) of a JobSet."""
    st = status(job)
    if job.get("kind") == "JobSet":
        return sum(int(j.get("ready") or 0) for j in st.get("replicatedJobsStatus") or [])
    return int(st.get("ready") or 0)


def generation_progress(progress: Mapping[str, Any]) -> str | None:
    gen, total = progress.get(Progress.GENERATION), progress.get(Progress.GENERATIONS)
    if gen is None or total is None:
        return None
    return f"{gen}/{total}"


def ti_status(
    old: Mapping[str, Any],
    generation: int | None,
    state: str,
    message: str,
    now: str,
    *,
    job_name: str | None = None,
    preemptions: int | None = None,
    accepted: bool = True,
    reason: str | None = None,
) -> dict[str, Any]:
    """The operator-owned part of a TaskIntroduction's status once it is in ``state``
    (``reason``: of the state's condition, default the state itself)."""
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
    for ctype in EXCLUSIVE:
        if ctype == state:
            why = reason or ctype
            conditions = set_condition(conditions, ctype, True, why, message, now, generation)
        elif find_condition(conditions, ctype) is not None:
            conditions = set_condition(conditions, ctype, False, state, message, now, generation)
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
        "phase": state_of(conditions),  # for printing; decisions read the conditions
        "conditions": conditions,
        "observedGeneration": generation,
    }
    gp = generation_progress(progress)
    if gp is not None:
        out["generationProgress"] = gp
    if job_name is not None:
        out["jobName"] = job_name
    if state in api.ACTIVE and not old.get("startTime"):
        out["startTime"] = now
    if state in api.TERMINAL and not old.get("completionTime"):
        out["completionTime"] = now
    if preemptions is not None and preemptions > int(old.get("preemptions") or 0):
        out["preemptions"] = preemptions
    return out


def status_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any]:
    """Keys of ``new`` whose value differs from ``old`` (what a merge patch must carry)."""
    return {k: v for k, v in new.items() if old.get(k) != v}
