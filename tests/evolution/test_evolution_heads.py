"""Heads as a starting point: another task's head of the same label space is cloned as a
child's start (drawing no random number); other label spaces or sizes never are."""

from __future__ import annotations

import pytest
from evo_testutil import (
    SHAPE,
    ScriptedRng,
    context,
    make_space,
    retain_task,
)

from mutask.trainer.evolution import (
    ChildPlan,
    SearchSpace,
    System,
    fresh_plan,
    make_child,
)

NO = 0.99  # a draw that fails every µ test (µ ≤ 0.30) and steps ladders down


def sources(plan: ChildPlan) -> dict[str, str | None]:
    return {n.component.name: n.source for n in plan.new}


def test_another_tasks_head_of_the_same_label_space_is_cloned_as_the_start(
    system: System,
) -> None:
    other = retain_task(system, "a", num_classes=10, label_space="fashion|all")
    ctx = context(system, "t", make_space(), num_classes=10, label_space="fashion|all")
    plan = make_child(other, "c", ctx, ScriptedRng(default=NO))
    assert sources(plan)["head"] == "a/head"  # copied as the initial value...
    assert plan.path.component("head") == "c/head"  # ...into a head of the child's own
    head = next(n.component for n in plan.new if n.component.name == "head")
    assert head.label_space == "fashion|all" and head.num_classes == 10


@pytest.mark.parametrize(
    ("mine", "classes"),
    [("mnist|all", 10), ("", 10), ("fashion|all", 7)],
    ids=["other-label-space", "unknown-label-space", "other-class-count"],
)
def test_a_head_of_another_label_space_or_size_is_never_a_start(
    system: System, mine: str, classes: int
) -> None:
    other = retain_task(system, "a", num_classes=10, label_space="fashion|all")
    ctx = context(system, "t", make_space(), num_classes=classes, label_space=mine)
    plan = make_child(other, "c", ctx, ScriptedRng(default=NO))
    assert sources(plan)["head"] is None


def test_the_roots_head_starts_a_task_of_the_roots_label_space(space: SearchSpace) -> None:
    plan = fresh_plan("root", "__root__", SHAPE, space.defaults(), 5, label_space="d|all")
    system = System(SHAPE)
    system.add_components(n.component for n in plan.new)
    system.retain(plan.path)
    ctx = context(system, "t", space, num_classes=5, label_space="d|all")
    child = make_child(system.root, "c", ctx, ScriptedRng(default=NO))
    assert sources(child)["head"] == "root/head"


def test_cloning_a_head_draws_no_random_number(system: System) -> None:
    """Head starts do not change the draw order, so seeds replay as before."""
    other = retain_task(system, "a", num_classes=10, label_space="x|all")
    draws = []
    for space in ("x|all", "y|all"):
        rng = ScriptedRng(default=NO)
        make_child(other, "c", context(system, "t", make_space(), label_space=space), rng)
        draws.append(rng.calls)
    assert draws[0] == draws[1]
