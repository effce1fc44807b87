"""driver.py: the generation loop proposes K children, trains them through the callback,
reports every quality back in order and ends the generation."""

from __future__ import annotations

import numpy as np
import pytest
from evo_testutil import seeded_quality

from mutask.trainer.evolution import (
    IterationConfig,
    Offspring,
    Report,
    SearchSpace,
    System,
    TaskIteration,
    run_generation,
    run_generations,
)


def _iteration(system: System, space: SearchSpace, **config: int) -> TaskIteration:
    cfg = IterationConfig(**{"generations": 3, "candidates": 4, **config})
    return TaskIteration(system, "a", 10, space, cfg, np.random.default_rng(0))


def test_a_generation_trains_every_child_once_and_reports_in_order(system, space) -> None:
    it = _iteration(system, space)
    seen: list[Offspring] = []
    reports: list[Report] = []

    def train(offspring: Offspring) -> list[float | None]:
        seen.append(offspring)
        return [
            None if k == 1 else seeded_quality(0, p.path) for k, p in enumerate(offspring.plans)
        ]

    ended: list[list[str]] = []
    out = run_generation(
        it, train, on_report=reports.append, on_generation=lambda _o, dropped: ended.append(dropped)
    )
    (offspring,) = seen
    assert offspring.generation == 0 and len(offspring.plans) == 4
    assert all(
        {k: v for k, v in p.path.hparams.items() if k in offspring.data_hparams}
        == dict(offspring.data_hparams)
        for p in offspring.plans
    )
    assert out == reports and [r.candidate for r in reports] == [0, 1, 2, 3]
    assert [r.plan for r in reports] == list(offspring.plans)
    assert reports[1].quality is None and reports[1].scored is None and not reports[1].joined
    assert all(r.scored is not None and r.scored.quality == r.quality for r in out if r.quality)
    assert {p.id for p in it.population} == {r.plan.path.id for r in out if r.joined}
    assert it.generation == 1 and len(ended) == 1
    # the never-improving child's components were pending and are dropped at the end
    assert set(reports[1].plan.trainable_ids) <= set(ended[0])


def test_train_must_return_one_quality_per_child(system, space) -> None:
    it = _iteration(system, space)
    with pytest.raises(ValueError, match="3 qualities for 4"):
        run_generation(it, lambda offspring: [0.5] * 3)


def test_generations_run_until_done_or_the_given_count(system, space) -> None:
    it = _iteration(system, space)
    calls: list[int] = []

    def train(offspring: Offspring) -> list[float | None]:
        calls.append(offspring.generation)
        return [0.5] * len(offspring.plans)

    run_generations(it, train, until=2)
    assert calls == [0, 1] and not it.done
    run_generations(it, train)
    assert calls == [0, 1, 2] and it.done
