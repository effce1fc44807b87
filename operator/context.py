"""The operator's runtime context: settings, API access, storage prober, admission claims,
index views and per-object locks, bundled so that reconcilers are plain functions.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from mutask.operator.admission import Claims, Peer
from mutask.operator.kube import Kube
from mutask.operator.settings import OperatorSettings
from mutask.operator.storage import StorageProber


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class KeyedLocks:
    """One lock per object key so that a resync and a watch event never reconcile it at once."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[tuple[str, ...], threading.Lock] = {}

    @contextmanager
    def hold(self, key: tuple[str, ...]) -> Iterator[None]:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            yield

    def forget(self, key: tuple[str, ...]) -> None:
        with self._guard:
            self._locks.pop(key, None)


def _no_peers(namespace: str, system: str) -> list[Peer]:
    return []


def _no_preemptions(namespace: str, name: str) -> int:
    return 0


@dataclass
class Context:
    settings: OperatorSettings
    kube: Kube
    prober: StorageProber = field(default_factory=StorageProber)
    claims: Claims = field(default_factory=Claims)
    peers: Callable[[str, str], list[Peer]] = _no_peers
    preemptions: Callable[[str, str], int] = _no_preemptions
    locks: KeyedLocks = field(default_factory=KeyedLocks)
    clock: Callable[[], str] = utc_now
