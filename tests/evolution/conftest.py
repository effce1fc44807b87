"""Fixtures for the µ2Net core tests (the builders themselves live in ``evo_testutil``)."""

from __future__ import annotations

import numpy as np
import pytest
from evo_testutil import SHAPE, FakeTrainer, make_space, make_system

from mutask.trainer.evolution import IterationConfig, SearchSpace, System, ViTShape


@pytest.fixture
def shape() -> ViTShape:
    """A tiny ViT: hidden 8, 3 blocks, 2 heads, mlp 16, 8x8 images in 4x4 patches."""
    return SHAPE


@pytest.fixture
def space() -> SearchSpace:
    """The large search space (adapters on, one µ), depth tunable up to 4 blocks."""
    return make_space()


@pytest.fixture
def system(space: SearchSpace) -> System:
    """A system with only a fresh root path built by ``fresh_plan``."""
    return make_system(space)


@pytest.fixture
def config() -> IterationConfig:
    """A small iteration budget: 3 generations of 4 candidates."""
    return IterationConfig(generations=3, candidates=4)


@pytest.fixture
def trainer() -> FakeTrainer:
    """A torch-free trainer: quality is a seeded function of the path."""
    return FakeTrainer(seed=7)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
