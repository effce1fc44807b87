"""Parent selection: own population best-first, then shuffled seeds, then uniform."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from evo_testutil import ScriptedRng

from mutask.trainer.evolution import Path, select_parent
from mutask.trainer.evolution.selection import by_score


def path(pid: str, score: float | None = None, task: str = "t") -> Path:
    return Path(pid, task, {}, (), score=score)


POPULATION = [path("mid", 0.5), path("best", 0.9), path("worst", 0.1)]
SEEDS = [path("s1", task="a"), path("s2", task="b")]


def test_by_score_is_best_first_with_unscored_last_and_stable_ties() -> None:
    paths = [path("none"), path("x", 0.5), path("y", 0.7), path("z", 0.5)]
    assert [p.id for p in by_score(paths)] == ["y", "x", "z", "none"]


def test_unexplored_best_of_the_own_population_is_taken() -> None:
    # 0.5 ** 0 = 1: any draw accepts a path with no children yet.
    assert select_parent(POPULATION, SEEDS, {}, ScriptedRng(default=0.999)).id == "best"


def test_acceptance_halves_with_each_child_produced() -> None:
    offspring = {"best": 2}  # accepted with probability 0.25
    assert select_parent(POPULATION, SEEDS, offspring, ScriptedRng([0.24])).id == "best"
    assert select_parent(POPULATION, SEEDS, offspring, ScriptedRng([0.25])).id == "mid"


def test_own_population_is_walked_best_first() -> None:
    offspring = {"best": 1, "mid": 1, "worst": 1}
    rng = ScriptedRng([0.6, 0.6, 0.4])
    assert select_parent(POPULATION, SEEDS, offspring, rng).id == "worst"


def test_seeds_are_walked_in_their_given_order_when_no_own_path_is_accepted() -> None:
    offspring = {"best": 1, "mid": 1, "worst": 1, "s1": 1}
    rng = ScriptedRng([0.6, 0.6, 0.6, 0.6, 0.4])
    assert select_parent(POPULATION, SEEDS, offspring, rng).id == "s2"


def test_first_seed_is_taken_when_the_population_is_empty() -> None:
    assert select_parent([], SEEDS, {}, ScriptedRng(default=0.999)).id == "s1"


def test_uniform_pick_over_population_and_seeds_when_nothing_is_accepted() -> None:
    offspring = {p.id: 1 for p in [*POPULATION, *SEEDS]}
    pool = [*POPULATION, *SEEDS]
    for i, expected in enumerate(pool):
        rng = ScriptedRng(default=0.6, picks=[i])
        assert select_parent(POPULATION, SEEDS, offspring, rng) is expected


def test_uniform_fallback_is_uniform() -> None:
    offspring = {p.id: 60 for p in [*POPULATION, *SEEDS]}  # acceptance ~ 1e-18
    rng = np.random.default_rng(0)
    counts = Counter(select_parent(POPULATION, SEEDS, offspring, rng).id for _ in range(5000))
    assert set(counts) == {"best", "mid", "worst", "s1", "s2"}
    assert all(abs(n / 5000 - 0.2) < 0.03 for n in counts.values())


def test_acceptance_rate_matches_half_to_the_offspring() -> None:
    rng = np.random.default_rng(1)
    offspring = {"best": 3}
    hits = sum(select_parent(POPULATION, SEEDS, offspring, rng).id == "best" for _ in range(8000))
    assert abs(hits / 8000 - 0.125) < 0.015


def test_no_parent_at_all_is_an_error() -> None:
    with pytest.raises(ValueError, match="no parent"):
        select_parent([], [], {}, ScriptedRng())
