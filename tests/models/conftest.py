"""Shared fixtures of the model tests: a tiny ViT shape and a path builder."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from mutask.trainer.evolution.architecture import ViTShape, architecture
from mutask.trainer.models import PathModel, build_component

BuildPath = Callable[..., PathModel]


@pytest.fixture
def shape() -> ViTShape:
    """A tiny shape: 16 px images, 4 px patches -> 17 tokens, 3 blocks of width 32."""
    return ViTShape(hidden=32, depth=3, heads=4, mlp=64, patch=4, image_size=16)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(123))


def _randomize(module: nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)


@pytest.fixture
def randomize() -> Callable[[nn.Module, int], None]:
    """``randomize(module, seed)`` overwrites every parameter with N(0, 0.2) noise."""
    return _randomize


@pytest.fixture
def build_path(shape: ViTShape) -> BuildPath:
    """``build_path(num_layers, adapters, num_classes, seed, pool)`` -> PathModel.

    Components already in ``pool`` (a dict name -> module) are reused, new ones are added to it,
    so several calls with the same pool build paths that share modules.
    """

    def build(
        num_layers: int = 3,
        adapters: frozenset[int] = frozenset(),
        num_classes: int = 5,
        seed: int = 0,
        pool: dict[str, nn.Module] | None = None,
    ) -> PathModel:
        pool = {} if pool is None else pool
        g = torch.Generator().manual_seed(seed)
        for name in architecture(num_layers, adapters):
            if name not in pool:
                pool[name] = build_component(
                    name, shape, num_classes=num_classes, adapter_dim=8, generator=g
                )
        return PathModel([(n, pool[n]) for n in architecture(num_layers, adapters)])

    return build
