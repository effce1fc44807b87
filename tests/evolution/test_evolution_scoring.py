"""score = quality * s ** (accounted params / P_root) [* s ** (FLOPs / F_ref)]."""

from __future__ import annotations

import pytest
from evo_testutil import make_system, retain_task
from hypothesis import given, settings
from hypothesis import strategies as st

from mutask.trainer.evolution import Path, Scorer, System
from mutask.trainer.evolution.system import path_flops, path_params


def scorer(system: System, task: str, s: float = 0.5, flops: bool = False) -> Scorer:
    return Scorer(
        size_scale=s,
        root_params=system.root_params(),
        owners=system.owner_map(exclude=task),
        components=system.components,
        shape=system.shape,
        flops_ref=system.root_flops() if flops else 0,
    )


def as_task(path: Path, task: str) -> Path:
    return Path("child", task, path.hparams, path.components, parent=path.id)


@given(quality=st.floats(0, 1), shared=st.integers(0, 3))
@settings(max_examples=30, deadline=None)
def test_no_size_penalty_when_s_is_one(quality: float, shared: int) -> None:
    system = make_system()
    for i in range(shared):
        retain_task(system, f"t{i}")
    sc = scorer(system, "new", s=1.0, flops=True)
    assert sc.score(as_task(system.root, "new"), quality) == quality


def test_root_owner_is_not_counted_as_a_sharer(system: System) -> None:
    # Only the root owns these: the new task pays for every parameter.
    path = as_task(system.root, "new")
    assert scorer(system, "new").accounted_params(path) == system.root_params()


def test_shared_components_are_divided_among_their_owners(system: System) -> None:
    retain_task(system, "a")
    retain_task(system, "b", own=("head", "encoder_norm"))
    comps = system.components
    path = as_task(system.root, "new")
    expected = 0.0
    for name, cid in path.components:
        sharers = {"embedding": 3, "cls": 3, "posembed_input": 3, "encoder_norm": 2}
        sharers |= {f"encoderblock_{i}": 3 for i in range(3)}
        expected += comps[cid].num_params / sharers.get(name, 1)
    assert scorer(system, "new").accounted_params(path) == pytest.approx(expected)


def test_the_tasks_own_lock_does_not_double_count(system: System) -> None:
    a = retain_task(system, "a")
    # Scored for task a with a's own lock lifted: every component is a's alone.
    assert scorer(system, "a").accounted_params(a) == path_params(a, system.components)


def test_owners_including_the_task_are_not_counted_twice(system: System) -> None:
    a = retain_task(system, "a")
    owners = system.owner_map()  # a still listed as an owner of its own components
    sc = Scorer(0.5, system.root_params(), owners, system.components, system.shape)
    assert sc.accounted_params(a) == path_params(a, system.components)


def test_size_penalty_is_s_to_the_relative_size(system: System) -> None:
    b = scorer(system, "new", s=0.9).breakdown(as_task(system.root, "new"), 0.8)
    assert b.quality == 0.8
    assert b.accounted_params == system.root_params()
    assert b.penalty == pytest.approx(0.9)
    assert b.score == pytest.approx(0.72)


def test_sharing_makes_a_path_cheaper(system: System) -> None:
    alone = scorer(system, "new").score(as_task(system.root, "new"), 1.0)
    retain_task(system, "a")
    shared = scorer(system, "new").score(as_task(system.root, "new"), 1.0)
    assert shared > alone


def test_flops_term_multiplies_s_to_the_relative_flops(system: System) -> None:
    path = as_task(system.root, "new")
    b = scorer(system, "new", s=0.9, flops=True).breakdown(path, 1.0)
    assert path_flops(path, system.components, system.shape) == system.root_flops()
    assert b.penalty == pytest.approx(0.9 * 0.9)
    assert b.score == pytest.approx(0.81)
