"""PathModel: module sharing, adapter no-op insertion, split forwards, order validation."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from mutask.trainer.evolution.architecture import ViTShape, architecture
from mutask.trainer.models import STEM_LENGTH, PathModel, build_component

BuildPath = Callable[..., PathModel]
Randomize = Callable[[nn.Module, int], None]


def test_forward_shape_and_accessors(build_path: BuildPath, images: torch.Tensor) -> None:
    model = build_path(num_layers=2, adapters=frozenset({1}), num_classes=7)
    assert model.names == tuple(architecture(2, {1}))
    assert len(model) == 8 and model.num_layers == 2
    assert model.index("encoderblock_1") == 5
    assert model.component("encoderblock_1") is model.components[5]
    assert [n for n, _ in model.items()] == list(model.names)
    assert model(images).shape == (2, 7)
    with pytest.raises(KeyError, match="encoderblock_2"):
        model.index("encoderblock_2")


def test_paths_reference_shared_modules(
    build_path: BuildPath, images: torch.Tensor, randomize: Randomize
) -> None:
    pool: dict[str, nn.Module] = {}
    a = build_path(num_layers=3, pool=pool, seed=0)
    pool.pop("head")
    b = build_path(num_layers=2, adapters=frozenset({1}), pool=pool, seed=1)
    randomize(a.component("head"), 1)
    randomize(b.component("head"), 2)
    for name in ("embedding", "cls", "posembed_input", "encoderblock_0", "encoderblock_1"):
        assert a.component(name) is b.component(name) is pool[name]
        pairs = zip(a.component(name).parameters(), b.component(name).parameters(), strict=True)
        for pa, pb in pairs:
            assert pa.data_ptr() == pb.data_ptr()
    assert a.component("head") is not b.component("head")

    before_a, before_b = a(images), b(images)
    with torch.no_grad():
        pool["encoderblock_0"].state_dict()["mlp.fc2.bias"].add_(0.5)
    assert not torch.equal(a(images), before_a)
    assert not torch.equal(b(images), before_b)

    # Training through one path moves the shared weights of the other.
    b(images).sum().backward()
    grad = dict(pool["encoderblock_0"].named_parameters())["attn.qkv.weight"].grad
    assert grad is not None and grad.abs().sum() > 0


def test_inserting_fresh_adapter_is_a_noop(
    build_path: BuildPath, shape: ViTShape, images: torch.Tensor, randomize: Randomize
) -> None:
    pool: dict[str, nn.Module] = {}
    plain = build_path(num_layers=3, pool=pool)
    assert torch.equal(plain(images), torch.zeros(2, 5))  # zero-initialised head
    randomize(pool["head"], 3)
    g = torch.Generator().manual_seed(9)
    for i in (0, 2):
        pool[f"residual_adapter_{i}"] = build_component(
            f"residual_adapter_{i}", shape, adapter_dim=16, generator=g
        )
    adapted = build_path(num_layers=3, adapters=frozenset({0, 2}), pool=pool)
    features = plain.forward_until(images, len(plain) - 1)
    assert torch.equal(adapted.forward_until(images, len(adapted) - 1), features)
    assert torch.equal(adapted(images), plain(images))
    assert plain(images).abs().sum() > 0


@pytest.mark.parametrize("adapters", [frozenset(), frozenset({0, 2})])
def test_split_forwards_compose_exactly(
    build_path: BuildPath, images: torch.Tensor, randomize: Randomize, adapters: frozenset[int]
) -> None:
    model = build_path(num_layers=3, adapters=adapters)
    randomize(model, 4)
    full = model(images)
    n = len(model)
    for k in range(n + 1):
        middle = model.forward_until(images, k)
        assert torch.equal(model.forward_from(middle, k), full), k
    assert torch.equal(model.forward_until(images, 0), images)
    assert model.forward_until(images, 1).shape == (2, 16, 32)
    assert model.forward_until(images, 2).shape == (2, 17, 32)
    assert model.forward_until(images, STEM_LENGTH).shape == (2, 17, 32)
    assert torch.equal(model.forward_until(images, n), full)
    assert torch.equal(model.forward_from(full, n), full)
    for bad in (-1, n + 1):
        with pytest.raises(IndexError):
            model.forward_until(images, bad)
        with pytest.raises(IndexError):
            model.forward_from(full, bad)


def test_frozen_prefix_is_computed_once(
    build_path: BuildPath, images: torch.Tensor, randomize: Randomize
) -> None:
    """The intended use: one cached prefix, several candidates with different suffixes."""
    pool: dict[str, nn.Module] = {}
    a = build_path(num_layers=3, pool=pool)
    pool.pop("head")
    pool.pop("encoderblock_2")
    b = build_path(num_layers=3, pool=pool, seed=5)
    randomize(a, 1)
    randomize(b.component("encoderblock_2"), 2)
    randomize(b.component("head"), 3)
    split = a.index("encoderblock_2")
    assert split == b.index("encoderblock_2")
    prefix = a.forward_until(images, split)
    assert torch.equal(a.forward_from(prefix, split), a(images))
    assert torch.equal(b.forward_from(prefix, split), b(images))


def test_rejects_components_out_of_architecture_order(shape: ViTShape) -> None:
    g = torch.Generator().manual_seed(0)
    mods = {
        n: build_component(n, shape, num_classes=2, adapter_dim=4, generator=g)
        for n in architecture(2, {1})
    }
    good = list(mods.items())
    PathModel(good)
    for bad in (
        good[:-1],  # no head
        [good[1], good[0], *good[2:]],  # cls before embedding
        [*good[:3], good[4], good[3], *good[5:]],  # adapter after its block
        [*good[:3], *good[4:]],  # encoderblock_0 missing
        [*good, good[-1]],  # duplicate head
    ):
        with pytest.raises(ValueError, match="architecture order"):
            PathModel(bad)
