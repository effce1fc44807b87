"""What a plan asks the apply step to do: plain frozen values, no behaviour (see apply.py).

A ``Plan`` is the whole outcome of one pure planning step: actions that converge the children
(idempotent: creates find existing objects, patches are absolute), the status changes to commit
with the observed resourceVersion as precondition, announcements (events, counters) made only
once that commit succeeded, and claim-book updates for admission.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mutask.operator.spec import ObjectRef


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event on ``target``."""

    target: ObjectRef
    reason: str
    message: str
    warning: bool = False


@dataclass(frozen=True)
class Create:
    """Create ``body`` unless it exists; ``on_created`` is announced only if this created it."""

    body: Mapping[str, Any]
    on_created: Event | None = None


@dataclass(frozen=True)
class SuspendJob:
    """Set a Job's (or JobSet's) ``spec.suspend``."""

    namespace: str
    name: str
    suspend: bool
    kind: str = "Job"


@dataclass(frozen=True)
class DeleteJob:
    """Delete a Job (or JobSet) and, first, its pods (foreground: the trainer gets SIGTERM)."""

    namespace: str
    name: str
    kind: str = "Job"


@dataclass(frozen=True)
class Count:
    """Add ``amount`` to one of the operator's Prometheus counters (metrics.COUNTERS)."""

    counter: str
    amount: int = 1


@dataclass(frozen=True)
class Claim:
    """Record that this process admitted ``name`` (until the index shows it)."""

    system_key: tuple[str, str]
    name: str
    task: str


@dataclass(frozen=True)
class Release:
    """Drop ``name``'s admission claim."""

    system_key: tuple[str, str]
    name: str


Action = Create | SuspendJob | DeleteJob
Announcement = Event | Count
ClaimChange = Claim | Release


@dataclass(frozen=True)
class Plan:
    """One planning step's outcome for one object (see the module docstring)."""

    target: ObjectRef
    state: str  # the object's state after this plan (a condition type)
    message: str
    actions: tuple[Action, ...] = ()
    status: Mapping[str, Any] = field(default_factory=dict)  # changed status keys; {}: none
    announce: tuple[Announcement, ...] = ()
    claims: tuple[ClaimChange, ...] = ()
    wakes: tuple[str, str] | None = None  # a slot of this system was freed: admit its waiters
