"""pool.py: materialising a child's components, sharing modules, saving and loading blobs.

A real SystemStore over a LocalObjectStore in ``tmp_path``; a tiny ViT shape.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from trainer_testutil import SHAPE, one_torch_thread, same_state

from mutask.trainer.evolution import Component, NewComponent, fresh_plan
from mutask.trainer.iteration.pool import ComponentPool
from mutask.trainer.store.objects import LocalObjectStore
from mutask.trainer.store.system_store import SystemStore, param_hash

CPU = torch.device("cpu")
BLOCK = "encoderblock_0"


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    with one_torch_thread():
        yield


def _block(cid: str) -> Component:
    return Component(cid, BLOCK, SHAPE.component_params(BLOCK))


def _pool(
    tmp_path: Path, seed: int = 0, entries: dict | None = None, components: dict | None = None
) -> ComponentPool:
    store = SystemStore(LocalObjectStore(tmp_path / "store"))
    return ComponentPool(store, SHAPE, CPU, components or {}, entries or {}, seed=seed)


def _params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _with_trained_source(pool: ComponentPool) -> str:
    """A live component ``a/encoderblock_0`` with some momentum, as a trained one has."""
    module = pool.materialize(NewComponent(_block("a/" + BLOCK), None))
    pool.momentum["a/" + BLOCK] = {k: torch.randn_like(p) for k, p in module.named_parameters()}
    return "a/" + BLOCK


def test_fresh_init_is_deterministic_per_seed_and_component_id(tmp_path: Path) -> None:
    def init(seed: int, cid: str) -> dict[str, torch.Tensor]:
        return _params(_pool(tmp_path, seed).materialize(NewComponent(_block(cid), None)))

    assert same_state([init(3, "c/x")], [init(3, "c/x")])
    assert not same_state([init(3, "c/x")], [init(3, "c/y")])
    assert not same_state([init(3, "c/x")], [init(4, "c/x")])


def test_fresh_init_does_not_touch_the_global_rng(tmp_path: Path) -> None:
    state = torch.random.get_rng_state()
    _pool(tmp_path).materialize(NewComponent(_block("c/x"), None))
    assert torch.equal(torch.random.get_rng_state(), state)


def test_materialized_components_are_trainable_with_empty_momentum(tmp_path: Path) -> None:
    pool = _pool(tmp_path)
    module = pool.materialize(NewComponent(_block("c/x"), None))
    assert all(p.requires_grad for p in module.parameters())
    assert pool.momentum["c/x"] == {}


def test_copy_from_a_source_starts_equal_to_it(tmp_path: Path) -> None:
    pool = _pool(tmp_path)
    src = _with_trained_source(pool)
    copy = pool.materialize(NewComponent(_block("b/" + BLOCK), src))
    assert same_state([_params(copy)], [_params(pool.modules[src])])
    assert same_state([pool.momentum["b/" + BLOCK]], [pool.momentum[src]])


def test_copy_from_a_source_is_deep_for_params_and_momentum(tmp_path: Path) -> None:
    pool = _pool(tmp_path)
    src = _with_trained_source(pool)
    params_before = _params(pool.modules[src])
    momentum_before = {k: v.clone() for k, v in pool.momentum[src].items()}
    copy = pool.materialize(NewComponent(_block("b/" + BLOCK), src))
    with torch.no_grad():
        for p in copy.parameters():
            p.add_(1.0)
    for buf in pool.momentum["b/" + BLOCK].values():
        buf.add_(1.0)
    assert copy is not pool.modules[src]
    assert same_state([_params(pool.modules[src])], [params_before])
    assert same_state([pool.momentum[src]], [momentum_before])


def test_copy_of_a_frozen_source_is_trainable_and_the_source_stays_frozen(tmp_path: Path) -> None:
    pool = _pool(tmp_path)
    src = _with_trained_source(pool)
    pool.freeze([src])
    copy = pool.materialize(NewComponent(_block("b/" + BLOCK), src))
    assert all(p.requires_grad for p in copy.parameters())
    assert not any(p.requires_grad for p in pool.modules[src].parameters())


def test_model_references_the_pool_modules_without_copies(tmp_path: Path) -> None:
    pool = _pool(tmp_path)
    plan = fresh_plan("p", "t", SHAPE, {"num_layers": 2}, num_classes=3)
    for new in plan.new:
        pool.materialize(new)
    model = pool.model(plan.path)
    for name, cid in plan.path.components:
        assert model.component(name) is pool.modules[cid]
    assert model(torch.zeros(2, 3, 8, 8)).shape == (2, 3)


def test_save_writes_a_blob_whose_param_hash_matches(tmp_path: Path) -> None:
    pool = _pool(tmp_path)
    cid = _with_trained_source(pool)
    entry = pool.save(cid)
    params, momentum = pool.store.get_component(entry["blob"])
    assert entry["param_hash"] == param_hash(params) == pool.param_hash(cid)
    assert same_state([params, momentum], [_params(pool.modules[cid]), pool.momentum[cid]])
    assert entry["id"] == cid and entry["name"] == BLOCK
    assert pool.entries[cid] == entry


def test_get_loads_a_published_component_frozen_with_its_momentum(tmp_path: Path) -> None:
    writer = _pool(tmp_path)
    cid = _with_trained_source(writer)
    entry = writer.save(cid)
    reader = _pool(tmp_path, components={cid: _block(cid)}, entries={cid: entry})
    module = reader.get(cid)
    assert not any(p.requires_grad for p in module.parameters())
    assert same_state([_params(module)], [_params(writer.modules[cid])])
    assert same_state([reader.momentum[cid]], [writer.momentum[cid]])
    assert reader.get(cid) is module  # loaded once


def test_get_of_an_unknown_component_names_it(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match="nope"):
        _pool(tmp_path).get("nope")
