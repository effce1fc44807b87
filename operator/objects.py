"""Pure helpers on Kubernetes objects (plain dicts): names, labels, owner references, pods.

No API calls: everything here is a function of its arguments.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from mutask import contract
from mutask.operator import api
from mutask.operator.spec import ObjectRef

Obj = Mapping[str, Any]


def meta(obj: Obj) -> Mapping[str, Any]:
    m = obj.get("metadata") or {}
    return m if isinstance(m, Mapping) else {}


def spec(obj: Obj) -> Mapping[str, Any]:
    s = obj.get("spec") or {}
    return s if isinstance(s, Mapping) else {}


def status(obj: Obj) -> Mapping[str, Any]:
    s = obj.get("status") or {}
    return s if isinstance(s, Mapping) else {}


def child_name(prefix: str, name: str, limit: int = 63) -> str:
    """A deterministic DNS-1123 child name ``<prefix>-<name>``, hashed when it would be too long.

    Deterministic names are what make creation idempotent: a restarted operator computes the
    same name and finds the existing Job instead of creating a second one.
    """
    full = f"{prefix}-{name}"
    if len(full) <= limit:
        return full
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{full[: limit - 9].rstrip('-.')}-{digest}"


def job_name(introduction_name: str) -> str:
    """The trainer Job (and ConfigMap) name of an introduction; room left for pod suffixes."""
    return child_name("mti", introduction_name, limit=52)


def owner_reference(owner: ObjectRef, *, controller: bool = True) -> dict[str, Any]:
    """An ownerReference for cascade deletion (the API server's garbage collector)."""
    return {
        "apiVersion": owner.api_version,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def common_labels(system_name: str, task: str, introduction: str) -> dict[str, str]:
    return {
        api.LABEL_NAME: "mutask-trainer",
        api.LABEL_COMPONENT: "trainer",
        api.LABEL_MANAGED_BY: api.MANAGED_BY,
        api.LABEL_SYSTEM: api.label_value(system_name),
        api.LABEL_TASK: api.label_value(task),
        api.LABEL_INTRODUCTION: api.label_value(introduction),
    }


def is_preempted(pod: Obj) -> bool:
    """A failed trainer pod that was disrupted or exited 75 (checkpointed after SIGTERM)."""
    st = status(pod)
    if st.get("phase") != "Failed":
        return False
    for cond in st.get("conditions") or []:
        if cond.get("type") == "DisruptionTarget" and cond.get("status") == "True":
            return True
    for cs in st.get("containerStatuses") or []:
        term = (cs.get("state") or {}).get("terminated") or {}
        preempted = term.get("exitCode") == contract.ExitCode.PREEMPTED
        if cs.get("name") == contract.CONTAINER_NAME and preempted:
            return True
    return False


def unschedulable(pod: Obj) -> str | None:
    """The scheduler's message when ``pod`` fits no node (e.g. no pool with its accelerator)."""
    for cond in status(pod).get("conditions") or []:
        if cond.get("type") == "PodScheduled":
            if cond.get("status") == "False" and cond.get("reason") == api.UNSCHEDULABLE:
                return str(cond.get("message") or "no node fits the trainer pod")
            return None
    return None


def introduction_of(obj: Obj) -> str | None:
    """The TaskIntroduction a trainer Job or pod belongs to (its annotation), if any."""
    name = (meta(obj).get("annotations") or {}).get(api.LABEL_INTRODUCTION)
    return str(name) if name else None
