"""Parent selection: favour good paths that have had few children (0.5 ** offspring)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from mutask.trainer.evolution.system import Path


def by_score(paths: Sequence[Path]) -> list[Path]:
    """Best first; ties keep their order (stable), unscored paths last."""
    return sorted(paths, key=lambda p: -(p.score if p.score is not None else float("-inf")))


def select_parent(
    population: Sequence[Path],
    seeds: Sequence[Path],
    offspring: Mapping[str, int],
    rng: np.random.Generator,
) -> Path:
    """Spec steps 1-3: own population best-first, then shuffled seeds, then uniform."""
    for candidates in (by_score(population), seeds):
        for path in candidates:
            if rng.random() < 0.5 ** offspring.get(path.id, 0):
                return path
    pool = [*population, *seeds]
    if not pool:
        raise ValueError("no parent available: empty population and no seed paths")
    return pool[int(rng.integers(len(pool)))]
