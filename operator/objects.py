"""Pure helpers on Kubernetes objects (plain dicts): names, labels, owner references, conditions.

No API calls: everything here is a function of its arguments (and, for conditions, a clock value).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

from mutask import contract
from mutask.operator import api

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


def bootstrap_name(system_name: str) -> str:
    return f"{system_name}-bootstrap"


def owner_reference(owner: Obj, *, controller: bool = True) -> dict[str, Any]:
    """An ownerReference for cascade deletion (the API server's garbage collector)."""
    m = meta(owner)
    return {
        "apiVersion": owner.get("apiVersion", contract.API_VERSION),
        "kind": owner.get("kind", contract.TI_KIND),
        "name": m.get("name"),
        "uid": m.get("uid"),
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


def find_condition(conditions: Sequence[Mapping[str, Any]], ctype: str) -> Mapping[str, Any] | None:
    for cond in conditions:
        if cond.get("type") == ctype:
            return cond
    return None


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
