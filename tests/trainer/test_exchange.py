"""iteration/exchange.py: workers sharing each generation through the store, run on CPU.

Two workers (the lead introducing, the other following, each in its own engine and thread,
one store) must publish exactly what one worker does; every worker trains only its share;
the lead clears the records once all are done; a failing worker stops the others; a
restarted attempt reuses the records an earlier one stored. On XLA the same runs one worker
per chip (tests/xla).
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
from trainer_testutil import one_torch_thread

from mutask.trainer.config import BudgetConfig, DatasetConfig, IntroduceConfig, SearchConfig
from mutask.trainer.evolution import ChildPlan, Component, NewComponent
from mutask.trainer.evolution import Path as EvoPath
from mutask.trainer.iteration.bootstrap import bootstrap_root
from mutask.trainer.iteration.engine import Engine
from mutask.trainer.iteration.exchange import (
    Exchange,
    ExchangeAborted,
    Worker,
    aborting_others,
    training_cost,
)
from mutask.trainer.iteration.generation import GenerationTraining
from mutask.trainer.runtime.device import select_device
from mutask.trainer.store.gc import referenced_blobs
from mutask.trainer.store.system_store import SystemStore
from mutask.trainer.training import Interrupted

BUDGET = BudgetConfig(
    generations=2,
    candidates=3,
    validation_rounds=1,
    steps_per_round=3,
    batch_size=32,
    max_validation_examples=128,
)


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Any:
    with one_torch_thread():
        yield


def _cfg(store: Path, budget: BudgetConfig = BUDGET) -> IntroduceConfig:
    return IntroduceConfig(
        task="low",
        dataset=DatasetConfig(source="digits", labels=[0, 1, 2, 3, 4]),
        store=str(store),
        budget=budget,
        search=SearchConfig(size_scale=0.9),
        device="cpu",
    )


def _engine(store: Path, worker: Worker | None = None, **kw: Any) -> Engine:
    return Engine(
        SystemStore.open(str(store)),
        select_device("cpu"),
        progress_bars=False,
        log=lambda _m: None,
        worker=worker,
        **kw,
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    store = tmp_path_factory.mktemp("exchange") / "root"
    cfg = IntroduceConfig(
        task="digits",
        dataset=DatasetConfig(source="digits"),
        store=str(store),
        budget=BudgetConfig(generations=1, validation_rounds=1, steps_per_round=10),
    )
    with one_torch_thread():
        bootstrap_root(_engine(store), cfg)
    return store


def _copy(root: Path, where: Path) -> Path:
    shutil.copytree(root, where)
    return where


def _published(store: Path) -> dict[str, Any]:
    found = SystemStore.open(str(store)).read_manifest("low")
    assert found is not None
    m = found[0]
    hashes = {cid: c["param_hash"] for cid, c in m["components"].items()}
    return {"path": m["path"], "hashes": hashes, "score": m["score"], "test": m["test_accuracy"]}


def _shared_run(
    store: Path, attempt: str, budget: BudgetConfig = BUDGET, **follower_kw: Any
) -> tuple[Any, BaseException | None, dict[int, int]]:
    """The lead and one follower of ``attempt`` on ``store``: the lead's outcome, the
    follower's error (if any) and how many candidates each worker trained."""
    errors: list[BaseException] = []
    trained: dict[int, int] = {}
    inner = GenerationTraining.train

    def follow() -> None:
        try:
            engine = _engine(store, Worker(1, 2), attempt=attempt, **follower_kw)
            with aborting_others(engine.store, "low", attempt, Worker(1, 2)):
                engine.follow(_cfg(store, budget))
        except BaseException as err:
            errors.append(err)

    def counting(self: GenerationTraining, offspring: Any) -> Any:
        out = inner(self, offspring)
        assert self.exchange is not None
        trained[self.exchange.worker.rank] = self.trained
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(GenerationTraining, "train", counting)
        thread = threading.Thread(target=follow)
        thread.start()
        try:
            outcome = _engine(store, Worker(0, 2), attempt=attempt).introduce(_cfg(store, budget))
        finally:
            thread.join()
    return outcome, errors[0] if errors else None, trained


def test_two_workers_publish_exactly_what_one_does_and_leave_no_records(
    root: Path, tmp_path: Path
) -> None:
    one = _copy(root, tmp_path / "one")
    alone = _engine(one).introduce(_cfg(one))
    two = _copy(root, tmp_path / "two")
    shared, error, trained = _shared_run(two, "a")
    assert error is None
    assert _published(two) == _published(one)
    assert shared.best.id == alone.best.id and all(v.ok for v in shared.verifications)
    # 3 candidates per generation, split by cost: every one trained once, by one worker
    assert sum(trained.values()) == 6 and min(trained.values()) >= 2
    assert not list((two / "tasks" / "low").glob("exchange/**/*.json"))


def test_successive_halving_decides_from_every_workers_round_qualities(
    root: Path, tmp_path: Path
) -> None:
    """4 candidates, 3 rounds (4, 2, 1 go on): after each round that a decision follows, both
    workers hold every candidate's round quality, so they keep the same ones, and publish what
    one worker does."""
    budget = BudgetConfig(
        generations=1,
        candidates=4,
        validation_rounds=3,
        steps_per_round=3,
        batch_size=32,
        max_validation_examples=128,
    )
    one = _copy(root, tmp_path / "one")
    _engine(one).introduce(_cfg(one, budget))
    shared: dict[tuple[int, int], dict[int, float]] = {}
    inner = Exchange.share_round

    def spy(self: Exchange, gen: int, r: int, plans: Any, mine: Any, active: Any) -> Any:
        out = inner(self, gen, r, plans, mine, active)
        shared[(self.worker.rank, r)] = out
        return out

    two = _copy(root, tmp_path / "two")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Exchange, "share_round", spy)
        _, error, _ = _shared_run(two, "a", budget)
    assert error is None
    assert sorted(shared) == [(0, 0), (0, 1), (1, 0), (1, 1)]  # no decision after round 3
    assert [len(shared[(0, r)]) for r in range(2)] == [4, 2]  # the halving's rungs: 4, 2, 1
    for r in range(2):
        assert shared[(0, r)] == shared[(1, r)], f"round {r}: the workers disagree"
    assert _published(two) == _published(one)


def test_a_failing_worker_stops_the_others(root: Path, tmp_path: Path) -> None:
    store = _copy(root, tmp_path / "store")

    def boom() -> bool:
        raise RuntimeError("chip lost")

    with pytest.raises(ExchangeAborted, match="worker 1 failed: RuntimeError: chip lost"):
        _shared_run(store, "a", should_stop=boom)


def test_a_restarted_attempt_reuses_the_records_of_an_earlier_one(
    root: Path, tmp_path: Path
) -> None:
    store = _copy(root, tmp_path / "store")
    records = store / "tasks" / "low" / "exchange"

    def stored_its_share() -> bool:  # the follower is stopped once it stored a record
        return any(records.glob("*/g0/c*.json"))

    follower = _engine(store, Worker(1, 2), attempt="a", should_stop=stored_its_share)
    with pytest.raises(Interrupted):
        follower.follow(_cfg(store))
    kept = list(records.glob("*/g0/c*.json"))  # the lead never ran: these are the follower's
    assert kept
    for record in kept:
        blobs = set(json.loads(record.read_text())["components"].values())
        assert blobs and blobs <= referenced_blobs(SystemStore.open(str(store)))[0], "GC keeps"
    shares: list[list[int]] = []  # the follower's share of each generation
    share = Worker.share

    def spy(self: Worker, candidates: int, costs: Any = None) -> list[int]:
        out = share(self, candidates, costs)
        if self.rank == 1:
            shares.append(out)
        return out

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Worker, "share", spy)
        _, error, trained = _shared_run(store, "b")
    assert error is None
    assert len(shares) == 2
    retrained = len(shares[0]) - len(kept) + len(shares[1])
    assert trained[1] == retrained, "the follower re-trained only what had no record"
    fresh = _copy(root, tmp_path / "fresh")
    _engine(fresh).introduce(_cfg(fresh))
    assert _published(store) == _published(fresh)


def test_workers_share_candidates_round_robin_and_ranks_are_checked() -> None:
    assert [Worker(r, 3).share(7) for r in range(3)] == [[0, 3, 6], [1, 4], [2, 5]]
    assert Worker().lead and not Worker(1, 2).lead
    with pytest.raises(ValueError, match=r"worker rank 2 is not in 0\.\.1"):
        Worker(2, 2)


def test_shares_balanced_by_cost_partition_the_generation_and_beat_round_robin() -> None:
    costs = [5.0, 1.0, 1.0, 1.0, 4.0, 1.0, 1.0, 2.0]
    shares = [Worker(r, 2).share(len(costs), costs) for r in range(2)]
    assert shares == [[0, 1, 2, 5], [3, 4, 6, 7]]
    assert sorted(shares[0] + shares[1]) == list(range(len(costs)))

    def busiest(split: list[list[int]]) -> float:
        return max(sum(costs[k] for k in share) for share in split)

    assert busiest(shares) == 8.0 < busiest([Worker(r, 2).share(len(costs)) for r in range(2)])
    three = [Worker(r, 3).share(5, [1.0] * 5) for r in range(3)]  # equal costs: k in order
    assert three == [[0, 3], [1, 4], [2]]
    with pytest.raises(ValueError, match="3 costs for 4 candidates"):
        Worker(0, 2).share(4, [1.0, 1.0, 1.0])


def test_a_candidate_costs_its_forward_pass_plus_the_backward_from_its_first_trainable() -> None:
    names = ["embedding", "encoderblock_0", "encoderblock_1", "encoder_norm", "head"]

    def plan(trainable: set[str]) -> ChildPlan:
        refs = tuple((n, f"c/{n}" if n in trainable else f"root/{n}") for n in names)
        new = tuple(NewComponent(Component(f"c/{n}", n, 10), None) for n in trainable)
        return ChildPlan(EvoPath("c", "t", {}, refs), new)

    head_only = training_cost(plan({"head"}))
    assert head_only == pytest.approx(2.15 + 2 * 0.05)
    assert training_cost(plan({"encoderblock_1", "head"})) == pytest.approx(2.15 + 2 * 1.1)
    assert training_cost(plan({"embedding", "head"})) == pytest.approx(3 * 2.15)


def test_a_run_on_chips_reports_its_most_telling_worker_exit_code() -> None:
    from mutask.trainer.chips import merged_exit_code

    assert merged_exit_code([0, 0, 0, 0]) == 0
    assert merged_exit_code([75, 1]) == 75  # preempted: the others stopped with it
    assert merged_exit_code([1, 3]) == 3  # fenced
    assert merged_exit_code([0, 75, 2]) == 2  # bad input: retrying cannot help
    assert merged_exit_code([]) == 1  # no worker left a code: one died
