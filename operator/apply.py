"""Perform a plan through the Kubernetes API: converge children, commit status, announce.

The only place besides kube.py that writes to the API server. Order: the plan's actions
(idempotent), then the status commit with the observed resourceVersion as precondition, then
(only if that commit went through) its events and counters, so a transition is announced once
even when two reconciles of one object race: the loser's commit gets 409 and it says nothing.
"""

from __future__ import annotations

from mutask.operator import metrics
from mutask.operator.actions import Count, Create, DeleteJob, Event, Plan, SuspendJob
from mutask.operator.kube import Kube, path_of


def apply(kube: Kube, plan: Plan) -> bool:
    """Perform ``plan``; returns whether its status (if any) was committed."""
    for action in plan.actions:
        if isinstance(action, Create):
            body = action.body
            kind, ns = str(body["kind"]), str(body["metadata"]["namespace"])
            _, created = kube.create(path_of(kind, ns), body)
            if created and kind in ("Job", "JobSet"):
                metrics.COUNTERS["jobs_launched"].inc()
            if created and action.on_created is not None:
                announce(kube, action.on_created)
        elif isinstance(action, SuspendJob):
            path = path_of(action.kind, action.namespace, action.name)
            kube.merge_patch(path, {"spec": {"suspend": action.suspend}})
        elif isinstance(action, DeleteJob):
            path = path_of(action.kind, action.namespace, action.name)
            kube.delete(path, propagation="Foreground")
    if plan.status:
        target = plan.target
        path = path_of(target.kind, target.namespace, target.name)
        if not kube.commit_status(path, plan.status, target.resource_version):
            return False
    for item in plan.announce:
        announce(kube, item)
    return True


def announce(kube: Kube, item: Event | Count) -> None:
    if isinstance(item, Count):
        metrics.COUNTERS[item.counter].inc(item.amount)
    else:
        kube.post_event(item.target.as_object(), item.reason, item.message, warning=item.warning)
