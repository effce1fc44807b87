"""The shared system: derived ownership, retention, garbage collection, seeds."""

from __future__ import annotations

import pytest
from evo_testutil import retain_task

from mutask.trainer.evolution import ROOT_TASK, Component, Path, System, ViTShape, is_private
from mutask.trainer.evolution.system import path_flops, path_params


def test_root_components_are_owned_by_the_reserved_root_owner(system: System) -> None:
    for cid in system.root.component_ids:
        assert system.owners(cid) == {ROOT_TASK}


def test_root_has_fresh_components_for_every_name(system: System) -> None:
    assert system.root.names == [
        "embedding",
        "cls",
        "posembed_input",
        "encoderblock_0",
        "encoderblock_1",
        "encoderblock_2",
        "encoder_norm",
        "head",
    ]
    assert system.root.component_ids == [f"root/{n}" for n in system.root.names]


def test_system_without_root_raises(shape: ViTShape) -> None:
    with pytest.raises(KeyError, match="root"):
        _ = System(shape).root


def test_ownership_is_derived_from_retained_paths(system: System) -> None:
    retain_task(system, "a")
    retain_task(system, "b", own=("head", "encoder_norm"))
    assert system.owners("root/embedding") == {ROOT_TASK, "a", "b"}
    assert system.owners("root/encoder_norm") == {ROOT_TASK, "a"}
    assert system.owners("a/head") == {"a"}
    assert system.owners("root/embedding", exclude="a") == {ROOT_TASK, "b"}


def test_owner_map_matches_owners(system: System) -> None:
    retain_task(system, "a")
    owner_map = system.owner_map(exclude="a")
    for cid in system.components:
        assert owner_map.get(cid, frozenset()) == system.owners(cid, exclude="a")


def test_tasks_excludes_the_root(system: System) -> None:
    retain_task(system, "b")
    retain_task(system, "a")
    assert system.tasks == ["a", "b"]


def test_retain_rejects_unknown_components(system: System) -> None:
    bad = Path("x", "a", {}, (("head", "nowhere"),))
    with pytest.raises(KeyError, match="nowhere"):
        system.retain(bad)


def test_retaining_a_new_best_replaces_the_old_one(system: System) -> None:
    retain_task(system, "a")
    newer = Path("a/2", "a", {}, system.root.components)
    system.retain(newer)
    assert system.best["a"] is newer
    assert system.owners("a/head") == frozenset()


def test_collect_garbage_drops_exactly_the_unreferenced(system: System) -> None:
    retain_task(system, "a")
    system.add_components([Component("loose", "cls", 8), Component("kept", "cls", 8)])
    system.retain(Path("a/2", "a", {}, system.root.components))  # orphans a/head
    keep = Path("pending", "b", {}, (("cls", "kept"),))
    dropped = system.collect_garbage(keep=[keep])
    assert dropped == ["a/head", "loose"]
    assert set(system.components) == {*system.root.component_ids, "kept"}


def test_collect_garbage_with_nothing_to_drop(system: System) -> None:
    retain_task(system, "a")
    before = dict(system.components)
    assert system.collect_garbage() == []
    assert system.components == before


def test_private_prefix() -> None:
    assert is_private("private:mine")
    assert not is_private("cifar10")


def test_seeds_are_the_other_public_tasks_and_the_root(system: System) -> None:
    for task in ("a", "b", "private:p"):
        retain_task(system, task)
    assert [p.task for p in system.seeds_for("a")] == [ROOT_TASK, "b"]
    assert [p.task for p in system.seeds_for("c")] == [ROOT_TASK, "a", "b"]


def test_a_private_task_is_offered_the_public_tasks_but_not_itself(system: System) -> None:
    for task in ("a", "private:p", "private:q"):
        retain_task(system, task)
    assert [p.task for p in system.seeds_for("private:p")] == [ROOT_TASK, "a"]


def test_root_params_and_path_helpers(system: System) -> None:
    total = sum(c.num_params for c in system.components.values())
    assert system.root_params() == total == path_params(system.root, system.components)
    assert system.root_flops() == path_flops(system.root, system.components, system.shape)


def test_path_accessors() -> None:
    path = Path(
        "p", "a", {}, (("embedding", "e"), ("residual_adapter_1", "r"), ("encoderblock_1", "b"))
    )
    assert path.names == ["embedding", "residual_adapter_1", "encoderblock_1"]
    assert path.component_ids == ["e", "r", "b"]
    assert path.component("encoderblock_1") == "b"
    assert path.component("head") is None
    assert path.adapters == {1}


def test_path_and_component_round_trip_through_dicts() -> None:
    path = Path("p", "a", {"x": 1, "y": True}, (("cls", "c"),), parent="q", quality=0.5, score=0.4)
    comp = Component("c", "head", 90, num_classes=10, adapter_dim=0)
    assert Path.from_dict(path.to_dict()) == path
    assert Component.from_dict(comp.to_dict()) == comp
