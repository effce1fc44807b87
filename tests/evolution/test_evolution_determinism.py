"""The same seed gives the same evolution over several tasks and visits; another seed does not."""

from __future__ import annotations

import numpy as np
from evo_testutil import (
    FakeTrainer,
    make_space,
    make_system,
    run_iteration,
)

from mutask.trainer.evolution import (
    IterationConfig,
    System,
    round_robin,
)


def evolve(seed: int, tasks: list[str], rounds: int = 2, **config: object) -> System:
    space = make_space(per_action_mu=bool(config.pop("per_action_mu", False)))
    system = make_system(space)
    cfg = IterationConfig(**{"generations": 2, "candidates": 3, **config})  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    trainer = FakeTrainer(seed)
    for visit in round_robin(tasks, rounds):
        run_iteration(
            system, visit.task, space, cfg, rng, iteration=visit.iteration, trainer=trainer
        )
    return system


def test_same_seed_gives_the_same_evolution() -> None:
    a = evolve(3, ["a", "b", "private:p"], per_action_mu=True, size_scale=0.9)
    b = evolve(3, ["a", "b", "private:p"], per_action_mu=True, size_scale=0.9)
    assert a.best == b.best
    assert a.components == b.components


def test_different_seeds_give_different_evolutions() -> None:
    a = evolve(3, ["a", "b", "private:p"])
    b = evolve(4, ["a", "b", "private:p"])
    assert a.best != b.best


# -- final phase -------------------------------------------------------------------------
