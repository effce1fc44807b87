"""TaskIteration.refine: the final phase rescores the retained path in place; it refuses
paths it does not know or that have nothing to train."""

from __future__ import annotations

import numpy as np
import pytest
from evo_testutil import (
    retain_task,
    run_iteration,
)

from mutask.trainer.evolution import (
    IterationConfig,
    SearchSpace,
    System,
    TaskIteration,
)


def start(system: System, space: SearchSpace, task: str = "a", **config: int) -> TaskIteration:
    cfg = IterationConfig(**{"generations": 3, "candidates": 4, **config})
    return TaskIteration(system, task, 10, space, cfg, np.random.default_rng(0))


def test_refine_rescores_the_best_in_place_and_finish_retains_it(
    system: System, space: SearchSpace
) -> None:
    it = start(system, space, generations=1, candidates=3)
    run_iteration(system, "a", space, it.config, it.rng, it=it, generations=1)
    best = it.best
    assert best is not None and best.quality is not None
    own = it.own_components(best)
    assert own and all(cid in it.pending for cid in own)
    assert own == [cid for cid in best.component_ids if cid.startswith(best.id + "/")]
    refined = it.refine(best, best.quality + 0.1)
    assert refined.id == best.id and refined.quality == pytest.approx(best.quality + 0.1)
    assert it.best == refined and len(it.population) == len({p.id for p in it.population})
    assert it.finish().best == refined
    assert system.best["a"].quality == pytest.approx(best.quality + 0.1)


def test_refine_refuses_strangers_and_paths_with_nothing_to_train(
    system: System, space: SearchSpace
) -> None:
    system.retain(retain_task(system, "a").scored(0.5, 0.5))
    it = start(system, space)  # a revisit: its previous best is in the population
    previous = it.population[0]
    assert it.own_components(previous) == []  # published components are never trained
    with pytest.raises(ValueError, match=r"nothing|no component"):
        it.refine(previous, 0.9)
    with pytest.raises(KeyError):
        it.refine(system.root, 0.9)
