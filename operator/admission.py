"""Admission of TaskIntroductions: one active introduction per task per system, a system-wide
concurrency limit, oldest first. Pure decisions plus a small thread-safe claim book.

The peers come from a kopf index over TaskIntroductions (built from the watch stream, complete
before any handler runs, so a restarted operator sees every running introduction first). Claims
cover the gap between "this process admitted X" and "the index shows X's new status".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from mutask.operator import api
from mutask.operator.conditions import current_state
from mutask.operator.spec import IntroductionSpec


@dataclass(frozen=True)
class Peer:
    """What admission and the system summary need to know about one TaskIntroduction."""

    name: str
    task: str
    state: str = api.NEW  # read from its conditions
    created: str = ""
    suspended: bool = False
    progress: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    completion_time: str | None = None

    @property
    def order(self) -> tuple[str, str]:
        return (self.created, self.name)

    @property
    def waiting(self) -> bool:
        """Wants to run but has no Job yet (new, queued)."""
        return not self.suspended and self.state not in api.ACTIVE | api.TERMINAL | {api.SUSPENDED}


def peer_of(intro: IntroductionSpec, status: Mapping[str, Any]) -> Peer:
    """The peer view of a parsed introduction and its current status."""
    return Peer(
        name=intro.ref.name,
        task=intro.task,
        state=current_state(status),
        created=intro.ref.created,
        suspended=intro.suspend,
        progress=dict(status.get("progress") or {}),
        completion_time=status.get("completionTime"),
    )


def admit(me: Peer, peers: Iterable[Peer], max_concurrent: int) -> tuple[bool, str]:
    """May ``me`` start a trainer now? Returns (admitted, why-not message)."""
    others = [p for p in peers if p.name != me.name]
    active = [p for p in others if p.state in api.ACTIVE]
    for p in active:
        if p.task == me.task:
            return (
                False,
                f"task {me.task} is being introduced by {p.name}; waiting for it to finish",
            )
    for p in others:
        if p.task == me.task and p.waiting and p.order < me.order:
            return False, f"an older introduction of task {me.task} ({p.name}) goes first"
    if len(active) >= max_concurrent:
        return False, f"the system runs {len(active)}/{max_concurrent} introductions; waiting"
    busy_tasks = {p.task for p in active}
    ahead = {
        p.task for p in others if p.waiting and p.order < me.order and p.task not in busy_tasks
    }
    if len(active) + len(ahead) >= max_concurrent:
        return False, f"{len(ahead)} older introduction(s) of this system go first"
    return True, ""


class Claims:
    """Introductions admitted by this process whose new status may not be in the index yet."""

    def __init__(self, ttl_seconds: float = 120.0) -> None:
        self._lock = threading.Lock()
        self._claims: dict[tuple[str, str], dict[str, tuple[str, float]]] = {}
        self._ttl = ttl_seconds
        self.admission_lock = threading.Lock()

    def claim(self, system_key: tuple[str, str], name: str, task: str) -> None:
        with self._lock:
            self._claims.setdefault(system_key, {})[name] = (task, time.monotonic())

    def release(self, system_key: tuple[str, str], name: str) -> None:
        with self._lock:
            self._claims.get(system_key, {}).pop(name, None)

    def overlay(self, system_key: tuple[str, str], peers: Iterable[Peer]) -> list[Peer]:
        """The peers with claimed ones marked Accepted (expired claims are dropped)."""
        now = time.monotonic()
        with self._lock:
            book = self._claims.get(system_key, {})
            for name in [n for n, (_, t) in book.items() if now - t > self._ttl]:
                del book[name]
            claimed = dict(book)
        out: list[Peer] = []
        seen: set[str] = set()
        for p in peers:
            seen.add(p.name)
            if p.name in claimed and p.state not in api.ACTIVE | api.TERMINAL:
                p = replace(p, state=api.ACCEPTED)
            out.append(p)
        for name, (task, _) in claimed.items():
            if name not in seen:
                out.append(Peer(name, task, api.ACCEPTED))
        return out
