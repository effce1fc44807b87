"""A generation's candidates shared by several workers (the chips of a host), through the store.

Worker ``r`` of ``n`` (a :class:`Worker`) trains its share of the candidates (a split
balanced by each candidate's training cost, the same on every worker), stores each one's
trained components as content-addressed blobs (parameters and momentum, as the pool stores
components) plus a small result record, then gathers the generation's records in candidate
order. Every worker merges the same records in the same order into its
own pool, so all hold the same state and run the same evolution as a single worker: training
a candidate does not depend on where, or next to what, it trains. Worker 0 (the lead) holds
the task's lease, checkpoints, publishes and verifies, exactly as a single worker does.

Layout under the task's prefix in the store (``run``: the resume fingerprint, the same config
on the same published state; ``attempt``: one start of the workers, shared by all of them)::

    exchange/<run>/g<generation>/c<candidate>.json     one candidate's result record
    exchange/<run>/g<generation>/r<round>/c<candidate>.json   its quality after that round
    exchange/attempts/<attempt>/abort-<rank>.json      that worker failed: the others stop
    exchange/attempts/<attempt>/done-<rank>.json       that worker merged its last generation

Successive halving decides after every round which candidates go on, from every candidate's
round quality: each worker stores its own and waits for the others'
(:meth:`Exchange.share_round`), so all workers keep the same candidates.

A record names its plan by a digest, so a restarted run (same ``run``, a new attempt) reuses
every matching record an earlier attempt left and trains only the missing candidates. Garbage
collection keeps the blobs records reference (:func:`~mutask.trainer.store.gc.
referenced_blobs`); the lead removes the run's records once every worker is done, and
records of other runs when it starts.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from mutask.contract import ROOT_TASK
from mutask.trainer.evolution import ChildPlan
from mutask.trainer.evolution.architecture import block_index
from mutask.trainer.iteration.pool import ComponentPool
from mutask.trainer.store.layout import EXCHANGE, task_prefix
from mutask.trainer.store.objects import NotFound
from mutask.trainer.store.system_store import SystemStore
from mutask.trainer.training import CandidateResult, Interrupted, Momentum, RoundResult

T = TypeVar("T")


class ExchangeAborted(RuntimeError):
    """Another worker of this attempt failed; this one stops too."""


@dataclass(frozen=True)
class Worker:
    """This process's place among the workers sharing each generation: ``rank`` of ``count``."""

    rank: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.count:
            raise ValueError(f"worker rank {self.rank} is not in 0..{self.count - 1}")

    @property
    def lead(self) -> bool:
        """Worker 0 holds the lease, checkpoints, publishes and verifies."""
        return self.rank == 0

    def share(self, candidates: int, costs: Sequence[float] | None = None) -> list[int]:
        """The candidates this worker trains, in order: ``k % count == rank`` without
        ``costs``; with them, a balanced split (longest first, each to the least loaded
        worker, ties to the lower rank and the lower candidate), the same on every worker."""
        if costs is None:
            return list(range(self.rank, candidates, self.count))
        if len(costs) != candidates:
            raise ValueError(f"{len(costs)} costs for {candidates} candidates")
        loads = [0.0] * self.count
        mine: list[int] = []
        for k in sorted(range(candidates), key=lambda k: (-costs[k], k)):
            worker = min(range(self.count), key=lambda w: (loads[w], w))
            loads[worker] += costs[k]
            if worker == self.rank:
                mine.append(k)
        return sorted(mine)


@dataclass(frozen=True)
class Record:
    """One trained candidate as the store keeps it: its result and its components' blobs."""

    candidate: int
    plan: str
    worker: int
    quality: float | None
    score: float | None
    steps: int
    examples: int
    train_seconds: float
    rounds: list[dict[str, Any]] = field(default_factory=list)
    components: dict[str, str] = field(default_factory=dict)  # component id -> blob

    def result(self) -> CandidateResult:
        return CandidateResult(
            self.quality,
            self.score,
            [RoundResult(**r) for r in self.rounds],
            self.steps,
            self.examples,
            self.train_seconds,
        )


# Relative cost of one training step per component a path runs: a block dominates; the
# rest (embeddings, adapters, norm, head) is small next to it.
_BLOCK_COST, _OTHER_COST = 1.0, 0.05


def training_cost(plan: ChildPlan) -> float:
    """A candidate's relative cost per step: the forward pass through its whole path, plus
    the backward pass from its first trainable component on (twice a forward's work)."""
    trainable = set(plan.trainable_ids)
    cost = backward = 0.0
    started = False
    for name, cid in plan.path.components:
        weight = _BLOCK_COST if block_index(name) is not None else _OTHER_COST
        started = started or cid in trainable
        cost += weight
        backward += 2 * weight if started else 0.0
    return cost + backward


def plan_digest(plan: ChildPlan) -> str:
    """What a record was trained from: the child's path and how its components were made."""
    doc = {
        "path": plan.path.to_dict(),
        "new": [[n.component.to_dict(), n.source] for n in plan.new],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:24]


class Exchange:
    """One worker's view of a run's candidate records (see the module doc)."""

    def __init__(
        self,
        store: SystemStore,
        task: str,
        run: str,
        attempt: str,
        worker: Worker,
        *,
        should_stop: Callable[[], bool] | None = None,
        poll_seconds: float = 0.05,
    ) -> None:
        self.store = store
        self.objects = store.objects
        self.worker = worker
        self.task, self.attempt = task, attempt
        self.root = f"{task_prefix(task)}{EXCHANGE}"
        self.run = f"{self.root}{run}/"
        self.here = attempt_prefix(task, attempt)
        self.should_stop = should_stop
        self.poll_seconds = poll_seconds
        self._seen: dict[str, tuple[int, Any]] = {}  # key -> (object generation, parsed)

    # -- records -------------------------------------------------------------------------
    def stored(self, generation: int, plans: Sequence[ChildPlan]) -> dict[int, Record]:
        """The candidates of ``generation`` already recorded in this run, each trained from
        the plan it has now."""
        folder = f"{self.run}g{generation}/"
        found: dict[int, Record] = {}
        for info in self.objects.list(folder):
            k = _candidate_of(info.key[len(folder) :])
            if k is None:
                continue
            record = self._cached(info.key, info.generation, self._read) if k < len(plans) else None
            if record is not None and record.plan == plan_digest(plans[k]):
                found[k] = record
        return found

    def put(
        self,
        generation: int,
        k: int,
        plan: ChildPlan,
        result: CandidateResult,
        momentum: Momentum,
        pool: ComponentPool,
    ) -> Record:
        """Store candidate ``k``'s trained components (as restored, with ``momentum``) and
        its result."""
        blobs = {
            cid: self.store.put_component(dict(pool.modules[cid].state_dict()), mom)
            for cid, mom in zip(plan.trainable_ids, momentum, strict=True)
        }
        record = Record(
            candidate=k,
            plan=plan_digest(plan),
            worker=self.worker.rank,
            quality=result.quality,
            score=result.score,
            steps=result.steps,
            examples=result.examples,
            train_seconds=result.train_seconds,
            rounds=[asdict(r) for r in result.rounds],
            components=blobs,
        )
        body = json.dumps(asdict(record), sort_keys=True).encode()
        self.objects.write(f"{self.run}g{generation}/c{k}.json", body)
        return record

    def share_round(
        self,
        generation: int,
        round_: int,
        plans: Sequence[ChildPlan],
        mine: Mapping[int, float],
        active: Sequence[int],
    ) -> dict[int, float]:
        """Store the round qualities of this worker's candidates (``mine``), then wait for
        every ``active`` candidate's: the qualities successive halving decides from."""
        folder = f"{self.run}g{generation}/r{round_}/"
        for k, quality in mine.items():
            body = json.dumps({"plan": plan_digest(plans[k]), "quality": quality}).encode()
            self.objects.write(f"{folder}c{k}.json", body)
        delay = self.poll_seconds
        while True:
            found: dict[int, float] = dict(mine)
            for info in self.objects.list(folder):
                other = _candidate_of(info.key[len(folder) :])
                if other is None or other >= len(plans) or other in found:
                    continue
                doc = self._cached(info.key, info.generation, self._read_doc)
                if doc is not None and doc.get("plan") == plan_digest(plans[other]):
                    found[other] = float(doc["quality"])
            if all(k in found for k in active):
                return {k: found[k] for k in active}
            self._check()
            time.sleep(delay)
            delay = min(1.0, delay * 1.5)

    def gather(self, generation: int, plans: Sequence[ChildPlan]) -> list[Record]:
        """Every candidate's record in candidate order, waiting for the other workers'."""
        delay = self.poll_seconds
        while True:
            records = self.stored(generation, plans)
            if len(records) == len(plans):
                return [records[k] for k in range(len(plans))]
            self._check()
            time.sleep(delay)
            delay = min(1.0, delay * 1.5)

    def merge(
        self,
        records: Sequence[Record],
        plans: Sequence[ChildPlan],
        pool: ComponentPool,
        local: Mapping[int, tuple[CandidateResult, Momentum]],
    ) -> list[tuple[CandidateResult, Momentum]]:
        """Per candidate, its result and momentum: ``local`` for those trained here, else
        from the record, its components loaded into ``pool`` from their blobs (the same bits
        as where they were trained)."""
        out: list[tuple[CandidateResult, Momentum]] = []
        for k, (record, plan) in enumerate(zip(records, plans, strict=True)):
            if k in local:
                out.append(local[k])
                continue
            momentum: Momentum = []
            for new in plan.new:
                pool.load(new.component, record.components[new.component.id], frozen=False)
                momentum.append(dict(pool.momentum[new.component.id]))
            out.append((record.result(), momentum))
        return out

    # -- the workers' fate ----------------------------------------------------------------------
    def done(self) -> None:
        """This worker merged its last generation; the lead then waits for all, and clears."""
        self.objects.write(f"{self.here}done-{self.worker.rank}.json", b"{}")
        if not self.worker.lead:
            return
        delay = self.poll_seconds
        while True:
            keys = {info.key for info in self.objects.list(self.here)}
            if all(f"{self.here}done-{r}.json" in keys for r in range(self.worker.count)):
                break
            if aborted(self.store, self.task, self.attempt):
                return  # a failed worker's records stay for the next attempt
            if self.should_stop is not None and self.should_stop():
                raise Interrupted("stop requested while waiting for the other workers")
            time.sleep(delay)
            delay = min(1.0, delay * 1.5)
        self._delete(self.run)
        self._delete(self.here)

    def clear_other_runs(self) -> None:
        """The lead's start: drop what other runs and attempts left (stale records)."""
        for info in self.objects.list(self.root):
            if not info.key.startswith((self.run, self.here)):
                with contextlib.suppress(NotFound):
                    self.objects.delete(info.key)

    # -- helpers ----------------------------------------------------------------------------------
    def _check(self) -> None:
        if self.should_stop is not None and self.should_stop():
            raise Interrupted("stop requested while waiting for the other workers")
        reason = aborted(self.store, self.task, self.attempt)
        if reason:
            raise ExchangeAborted(reason)

    def _cached(self, key: str, generation: int, read: Callable[[str], T]) -> T:
        """An object as last read, unless it changed since (a gather's polls list the folder
        each time but read each object once: O(candidates) reads, not per poll)."""
        seen = self._seen.get(key)
        if seen is None or seen[0] != generation:
            seen = (generation, read(key))
            self._seen[key] = seen
        value: T = seen[1]
        return value

    def _read_doc(self, key: str) -> dict[str, Any] | None:
        try:
            data, _ = self.objects.read(key)
        except NotFound:
            return None
        doc: dict[str, Any] = json.loads(data)
        return doc

    def _read(self, key: str) -> Record | None:
        try:
            data, _ = self.objects.read(key)
        except NotFound:
            return None
        return Record(**json.loads(data))

    def _delete(self, prefix: str) -> None:
        for info in self.objects.list(prefix):
            with contextlib.suppress(NotFound):
                self.objects.delete(info.key)


def _candidate_of(name: str) -> int | None:
    """``c<k>.json`` -> k (anything else in a folder of records -> None)."""
    if name.startswith("c") and name.endswith(".json") and name[1:-5].isdigit():
        return int(name[1:-5])
    return None


def attempt_prefix(task: str, attempt: str) -> str:
    """Where the workers of one attempt say they are done, or failed."""
    return f"{task_prefix(task)}{EXCHANGE}attempts/{attempt}/"


@contextlib.contextmanager
def aborting_others(store: SystemStore, task: str, attempt: str, worker: Worker) -> Iterator[None]:
    """If this worker fails, the others of its attempt stop too (an abort record; best
    effort: the failure itself is what matters)."""
    try:
        yield
    except BaseException as err:
        if worker.count > 1:
            with contextlib.suppress(Exception):
                body = json.dumps({"worker": worker.rank, "reason": f"{type(err).__name__}: {err}"})
                store.objects.write(
                    f"{attempt_prefix(task, attempt)}abort-{worker.rank}.json", body.encode()
                )
        raise


def aborted(store: SystemStore, task: str, attempt: str) -> str | None:
    """Why ``attempt`` was aborted (a worker failed), or None."""
    prefix = attempt_prefix(task, attempt)
    for info in sorted(store.objects.list(prefix), key=lambda i: i.key):
        if info.key.startswith(f"{prefix}abort-"):
            try:
                doc = json.loads(store.objects.read(info.key)[0])
            except NotFound:
                continue
            return f"worker {doc.get('worker')} failed: {doc.get('reason')}"
    return None


def wait_for_root(
    store: SystemStore,
    task: str,
    attempt: str,
    should_stop: Callable[[], bool] | None = None,
    poll_seconds: float = 0.2,
) -> None:
    """A worker's wait while the lead bootstraps the root model."""
    while store.read_manifest(ROOT_TASK) is None:
        if should_stop is not None and should_stop():
            raise Interrupted("stop requested while the lead bootstraps the root")
        reason = aborted(store, task, attempt)
        if reason:
            raise ExchangeAborted(reason)
        time.sleep(poll_seconds)
