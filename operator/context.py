"""What the reconcilers share: settings, API access, storage prober, admission claims, a clock;
and the read-only views of kopf's indexes that one handler call passes in.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mutask.operator.admission import Claims, Peer
from mutask.operator.kube import Kube
from mutask.operator.settings import Settings
from mutask.operator.spec import SystemSpec
from mutask.operator.storage import StorageProber

SystemSeen = tuple[SystemSpec, Mapping[str, Any]]  # a MultitaskSystem's spec and status


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Context:
    """Built once at startup (handlers.startup) and kept in kopf's memo."""

    settings: Settings
    kube: Kube
    prober: StorageProber = field(default_factory=StorageProber)
    claims: Claims = field(default_factory=Claims)
    clock: Callable[[], str] = utc_now


@dataclass(frozen=True)
class Indexes:
    """kopf's in-memory indexes (built from the watch streams) as the reconcilers read them.

    ``peers``: (namespace, system) -> the system's introductions; ``systems``: (namespace,
    name) -> the system's spec and status; ``preempted``: (namespace, introduction) -> uids of
    its preempted trainer pods; ``unschedulable``: (namespace, introduction) -> the scheduler's
    message for each of its trainer pods that fits no node.
    """

    peers_index: Mapping[Any, Iterable[Peer]] = field(default_factory=dict)
    preempted_index: Mapping[Any, Iterable[str]] = field(default_factory=dict)
    systems_index: Mapping[Any, Iterable[SystemSeen]] = field(default_factory=dict)
    unschedulable_index: Mapping[Any, Iterable[str]] = field(default_factory=dict)

    def system(self, namespace: str, name: str) -> SystemSeen | None:
        return next(iter(self.systems_index.get((namespace, name), [])), None)

    def peers(self, namespace: str, system: str) -> list[Peer]:
        return list(self.peers_index.get((namespace, system), []))

    def preemptions(self, namespace: str, name: str) -> int:
        return len(set(self.preempted_index.get((namespace, name), [])))

    def unschedulable(self, namespace: str, name: str) -> str | None:
        """Why the scheduler cannot place a trainer pod of this introduction (None: it can)."""
        return next(iter(sorted(self.unschedulable_index.get((namespace, name), []))), None)

    def all_peers(self) -> list[tuple[tuple[str, str], Peer]]:
        return [(key, p) for key, store in list(self.peers_index.items()) for p in list(store)]
