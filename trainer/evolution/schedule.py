"""Which task to visit next: round-robin over the tasks, each visit one task iteration."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Visit:
    """One scheduled task iteration: the task and how many times it was visited before."""

    task: str
    iteration: int


def round_robin(
    tasks: Sequence[str], rounds: int = 1, previous: dict[str, int] | None = None
) -> Iterator[Visit]:
    """Visit every task in order, ``rounds`` times; ``previous`` counts earlier visits."""
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"duplicate task in schedule: {list(tasks)}")
    done = dict(previous or {})
    for _ in range(rounds):
        for task in tasks:
            n = done.get(task, 0)
            yield Visit(task, n)
            done[task] = n + 1
