"""make_child: clone the parent, then mutate hparams, depth, adapters and layers."""

from __future__ import annotations

import numpy as np
import pytest
from evo_testutil import (
    SHAPE,
    ScriptedRng,
    context,
    depth_of,
    make_space,
    make_system,
    retain_task,
)

from mutask.trainer.evolution import (
    ChildPlan,
    IterationConfig,
    Ladder,
    Path,
    SearchSpace,
    System,
    TaskIteration,
    fresh_plan,
    make_child,
)
from mutask.trainer.evolution.hparams import ADAPTER_DIM, DEPTH, MU, MU_LADDER

NO = 0.99  # a draw that fails every µ test (µ ≤ 0.30) and steps ladders down
YES = 0.0  # a draw that passes every µ test and steps ladders up


def space_of(*keys: str) -> SearchSpace:
    """A space tuning only µ and the given keys (so draws are easy to script)."""
    full = make_space().ladders
    return SearchSpace({MU: full[MU], **{k: full[k] for k in keys}})


def sources(plan: ChildPlan) -> dict[str, str | None]:
    return {n.component.name: n.source for n in plan.new}


def new_names(plan: ChildPlan) -> set[str]:
    return {n.component.name for n in plan.new}


def child_of_root(
    system: System, space: SearchSpace, rng: object, task: str = "t", **kw: object
) -> ChildPlan:
    return make_child(system.root, "c", context(system, task, space, **kw), rng)  # type: ignore[arg-type]


# -- cloning and referencing ------------------------------------------------------------
def test_child_records_its_parent_and_task(system: System) -> None:
    plan = child_of_root(system, make_space(), ScriptedRng())
    assert plan.path.parent == "root"
    assert plan.path.task == "t"
    assert plan.path.id == "c"


def test_frozen_components_are_referenced_when_the_clone_draw_fails(system: System) -> None:
    plan = child_of_root(system, make_space(), ScriptedRng(default=NO))
    for name in ("embedding", "cls", "posembed_input", "encoderblock_0", "encoderblock_2"):
        assert plan.path.component(name) == f"root/{name}"
    assert new_names(plan) == {"encoder_norm", "head"}


def test_frozen_components_are_cloned_when_the_clone_draw_passes(system: System) -> None:
    plan = child_of_root(system, space_of(), ScriptedRng(default=YES))
    assert new_names(plan) == set(system.root.names)
    for name, source in sources(plan).items():
        assert source == (None if name == "head" else f"root/{name}")


def test_clone_rate_of_frozen_components_follows_the_childs_mu(system: System) -> None:
    space = make_space()
    ctx = context(system, "t", space)
    rng = np.random.default_rng(3)
    cloned, expected = 0, 0.0
    for i in range(1500):
        plan = make_child(system.root, f"c{i}", ctx, rng)
        copied = sources(plan)
        for name, cid in plan.path.components:
            if name in ("encoder_norm", "head") or copied.get(name, cid) is None:
                continue  # always cloned, or freshly initialised: no clone draw
            cloned += name in copied
            expected += float(plan.path.hparams[MU])
    assert abs(cloned / expected - 1) < 0.05


def test_trainable_ancestor_components_are_always_cloned(system: System) -> None:
    # Everything trainable (nobody else owns it) and the head fits: all cloned, no draw.
    rng = ScriptedRng(default=NO)
    plan = child_of_root(system, space_of(), rng, num_classes=5, trainable=lambda cid: True)
    assert sources(plan) == {name: f"root/{name}" for name in system.root.names}
    assert rng.calls == 1  # only µ's own draw: trainable clones consume no randomness


def test_encoder_norm_is_always_cloned(system: System) -> None:
    plan = child_of_root(system, make_space(), ScriptedRng(default=NO))
    assert sources(plan)["encoder_norm"] == "root/encoder_norm"
    assert plan.path.component("encoder_norm") == "c/encoder_norm"


def test_the_roots_head_is_never_reused(system: System) -> None:
    plan = child_of_root(system, make_space(), ScriptedRng(default=YES), num_classes=5)
    assert sources(plan)["head"] is None


def test_another_tasks_head_is_replaced_by_a_fresh_head_for_the_task(system: System) -> None:
    other = retain_task(system, "a", num_classes=10)
    ctx = context(system, "t", make_space(), num_classes=10)
    plan = make_child(other, "c", ctx, ScriptedRng(default=YES))
    head = next(n for n in plan.new if n.component.name == "head")
    assert head.source is None
    assert head.component.num_classes == 10
    assert head.component.num_params == SHAPE.hidden * 10 + 10


def test_own_head_is_cloned_on_a_revisit(system: System) -> None:
    own = retain_task(system, "t", num_classes=10)
    ctx = context(system, "t", make_space(), num_classes=10)  # own lock lifted
    plan = make_child(own, "c", ctx, ScriptedRng(default=NO))
    assert sources(plan)["head"] == "t/head"
    assert plan.path.component("head") == "c/head"


def test_own_head_with_another_class_count_is_replaced(system: System) -> None:
    own = retain_task(system, "t", num_classes=10)
    ctx = context(system, "t", make_space(), num_classes=7)
    plan = make_child(own, "c", ctx, ScriptedRng(default=NO))
    assert sources(plan)["head"] is None
    assert plan.new[-1].component.num_classes == 7


def test_components_owned_by_others_are_referenced_or_copied_never_reused_in_place(
    system: System,
) -> None:
    retain_task(system, "a", own=("head", "encoderblock_1"))
    parent = system.best["a"]
    plan = make_child(parent, "c", context(system, "t", make_space()), np.random.default_rng(0))
    new_ids = set(plan.trainable_ids)
    assert not new_ids & set(system.components)
    for cid in plan.path.component_ids:
        assert cid in new_ids or system.owners(cid)


# -- new components ---------------------------------------------------------------------
def test_new_component_ids_are_namespaced_by_the_child(system: System) -> None:
    plan = child_of_root(system, make_space(), np.random.default_rng(1))
    assert all(n.component.id == f"c/{n.component.name}" for n in plan.new)
    assert plan.trainable_ids == [n.component.id for n in plan.new]


def test_new_component_sizes_come_from_the_shape(system: System) -> None:
    space = space_of(ADAPTER_DIM)
    plan = child_of_root(system, space, ScriptedRng(default=YES), num_classes=12)
    assert len(plan.new) > 5
    for n in plan.new:
        c = n.component
        expected = SHAPE.component_params(
            c.name, num_classes=c.num_classes, adapter_dim=c.adapter_dim
        )
        assert c.num_params == expected


# -- adapters ---------------------------------------------------------------------------
def test_adapters_are_inserted_fresh_with_the_childs_adapter_dim(system: System) -> None:
    plan = child_of_root(system, space_of(ADAPTER_DIM), ScriptedRng(default=YES))
    assert plan.path.adapters == {0, 1, 2}
    assert plan.path.hparams[ADAPTER_DIM] == 32  # 16 stepped up
    for i in range(3):
        adapter = next(n for n in plan.new if n.component.name == f"residual_adapter_{i}")
        assert adapter.source is None
        assert adapter.component.adapter_dim == 32
    names = plan.path.names
    assert names.index("residual_adapter_1") == names.index("encoderblock_1") - 1


def test_no_adapters_when_the_iteration_disables_them(system: System) -> None:
    plan = child_of_root(system, space_of(ADAPTER_DIM), ScriptedRng(default=YES), adapters=False)
    assert plan.path.adapters == frozenset()


def test_no_adapters_when_the_space_has_no_adapter_dim(system: System) -> None:
    plan = child_of_root(system, space_of(), ScriptedRng(default=YES))
    assert plan.path.adapters == frozenset()


def test_no_adapter_is_inserted_when_its_draw_fails(system: System) -> None:
    # µ kept, adapter_dim kept, then adapter draws: before block 1 only.
    rng = ScriptedRng([NO, NO, NO, YES, NO])
    plan = child_of_root(system, space_of(ADAPTER_DIM), rng)
    assert plan.path.adapters == {1}


def test_inherited_adapters_are_kept_and_keep_their_dim(system: System) -> None:
    space = space_of(ADAPTER_DIM)
    parent = child_of_root(system, space, ScriptedRng(default=YES))  # adapters, dim 32
    pending = {n.component.id for n in parent.new}
    ctx = context(
        system,
        "t",
        space,
        trainable=lambda cid: cid in pending,
        extra_paths=[parent.path],
        extra_components=[n.component for n in parent.new],
    )
    rng = ScriptedRng([NO, YES, YES], default=NO)  # adapter_dim 32 → 64, nothing else
    child = make_child(parent.path, "g", ctx, rng)
    assert child.path.hparams[ADAPTER_DIM] == 64
    assert child.path.adapters == {0, 1, 2}
    for i in range(3):
        adapter = next(n for n in child.new if n.component.name == f"residual_adapter_{i}")
        assert adapter.source == f"c/residual_adapter_{i}"
        assert adapter.component.adapter_dim == 32


# -- depth ------------------------------------------------------------------------------
DEPTH_DOWN = [NO, YES, NO]  # µ kept; num_layers mutates; steps down
DEPTH_UP = [NO, YES, YES]


def test_depth_minus_one_removes_the_top_block(system: System) -> None:
    plan = child_of_root(system, space_of(DEPTH), ScriptedRng(DEPTH_DOWN))
    assert plan.path.hparams[DEPTH] == 2
    assert depth_of(plan.path) == 2
    assert "encoderblock_2" not in plan.path.names
    assert plan.path.component("encoderblock_1") == "root/encoderblock_1"


def test_depth_minus_one_also_removes_the_top_blocks_adapter(system: System) -> None:
    space = space_of(DEPTH, ADAPTER_DIM)
    parent = child_of_root(system, space, ScriptedRng(default=YES))  # depth 4, adapters
    ctx = context(
        system,
        "t",
        space,
        extra_paths=[parent.path],
        extra_components=[n.component for n in parent.new],
    )
    child = make_child(parent.path, "g", ctx, ScriptedRng(DEPTH_DOWN, default=NO))
    assert depth_of(child.path) == 3
    assert child.path.adapters == {0, 1, 2}


def test_depth_plus_one_adds_a_fresh_block_when_no_ancestor_had_it(system: System) -> None:
    plan = child_of_root(system, space_of(DEPTH), ScriptedRng(DEPTH_UP))
    assert depth_of(plan.path) == 4
    assert sources(plan)["encoderblock_3"] is None
    block = next(n.component for n in plan.new if n.component.name == "encoderblock_3")
    assert block.num_params == SHAPE.component_params("encoderblock_0")


def test_depth_plus_one_re_adds_the_block_from_an_ancestor(system: System) -> None:
    space = space_of(DEPTH)
    parent = child_of_root(system, space, ScriptedRng(DEPTH_DOWN))
    ctx = context(
        system,
        "t",
        space,
        extra_paths=[parent.path],
        extra_components=[n.component for n in parent.new],
    )
    child = make_child(parent.path, "g", ctx, ScriptedRng(DEPTH_UP, default=NO))
    assert depth_of(child.path) == 3
    assert child.path.component("encoderblock_2") == "root/encoderblock_2"


def test_depth_plus_one_falls_back_to_the_root_when_ancestors_are_forgotten(
    system: System,
) -> None:
    # A retained path of depth 2 whose parent (never retained) is no longer known.
    root = system.root
    shallow = tuple(c for c in root.components if c[0] != "encoderblock_2")
    parent = Path("t/best", "t", {**root.hparams, DEPTH: 2}, shallow, parent="t~0.1.2")
    ctx = context(system, "t", space_of(DEPTH), extra_paths=[parent])
    child = make_child(parent, "g", ctx, ScriptedRng(DEPTH_UP, default=NO))
    assert child.path.component("encoderblock_2") == "root/encoderblock_2"


def test_revisit_re_adds_a_dropped_block_from_the_root(system: System) -> None:
    root = system.root
    shallow = tuple(c for c in root.components if c[0] != "encoderblock_2")
    system.retain(Path("t/best", "t", {**root.hparams, DEPTH: 2}, shallow, "t~0.1.2", 0.5, 0.5))
    cfg = IterationConfig(generations=1, candidates=1)
    rng = ScriptedRng([0.0, *DEPTH_UP], default=NO)  # select the previous best, then depth+1
    it = TaskIteration(system, "t", 5, space_of(DEPTH), cfg, rng, iteration=1)  # type: ignore[arg-type]
    plan = it.propose(0, {})
    assert plan.path.parent == "t/best"
    assert plan.path.component("encoderblock_2") == "root/encoderblock_2"


def test_depth_stays_within_its_ladder(system: System) -> None:
    space = SearchSpace({MU: Ladder(MU_LADDER, 0.2), DEPTH: Ladder((3,), 3)})
    plan = child_of_root(system, space, ScriptedRng(DEPTH_DOWN))
    assert depth_of(plan.path) == 3


def test_without_depth_tuning_every_child_keeps_its_parents_depth(system: System) -> None:
    fixed = make_space(tune_depth=False)
    assert DEPTH not in fixed.ladders and DEPTH not in fixed.model_keys()
    rng = np.random.default_rng(0)
    assert {depth_of(child_of_root(system, fixed, rng).path) for _ in range(60)} == {SHAPE.depth}
    rng = np.random.default_rng(0)
    tuned = {depth_of(child_of_root(system, make_space(), rng).path) for _ in range(60)}
    assert len(tuned) > 1  # the same draws with depth tuning on do change it


# -- hyperparameters --------------------------------------------------------------------
def test_mu_is_mutated_first_and_the_new_value_drives_the_hparams(system: System) -> None:
    root = system.root
    parent = Path("p", "t", {**root.hparams, MU: 0.1}, root.components)
    ctx = context(system, "t", space_of("opt_lr"), extra_paths=[parent])
    # µ: 0.05 < 0.10 → step up to 0.12; opt_lr: 0.11 < 0.12 (new µ) → up one rung.
    plan = make_child(parent, "c", ctx, ScriptedRng([0.05, YES, 0.11, YES]))
    assert plan.path.hparams[MU] == 0.12
    assert plan.path.hparams["opt_lr"] == 0.02


def test_without_mutation_the_child_keeps_the_parents_hparams(system: System) -> None:
    plan = child_of_root(system, make_space(), ScriptedRng(default=NO))
    assert plan.path.hparams == system.root.hparams


def test_model_mutation_never_touches_data_hparams(system: System) -> None:
    plan = child_of_root(system, make_space(), ScriptedRng(default=YES))
    for key, value in system.root.hparams.items():
        if key.startswith("ds_"):
            assert plan.path.hparams[key] == value
    assert plan.path.hparams["opt_lr"] != system.root.hparams["opt_lr"]


def test_data_hparams_given_to_the_child_override_the_parents(system: System) -> None:
    ctx = context(system, "t", make_space())
    data = {"ds_crop": False, "ds_hue_delta": 0.1}
    plan = make_child(system.root, "c", ctx, ScriptedRng(), data_hparams=data)
    assert plan.path.hparams["ds_crop"] is False
    assert plan.path.hparams["ds_hue_delta"] == 0.1


def test_per_action_mode_records_the_mu_of_every_action_it_took(system: System) -> None:
    space = make_space(per_action_mu=True)
    plan = child_of_root(system, space, np.random.default_rng(5))
    keys = {k for k in plan.path.hparams if k.startswith("_mu_/")}
    assert {"_mu_/opt_lr", "_mu_/num_layers", "_mu_/clone:embedding", "_mu_/adapter:0"} <= keys
    assert "_mu_/clone:encoder_norm" not in keys  # always cloned: no draw, no µ
    assert all(0.02 <= plan.path.hparams[k] <= 0.3 for k in keys)


def test_same_rng_state_gives_the_same_child(system: System) -> None:
    ctx = context(system, "t", make_space(per_action_mu=True))
    a = make_child(system.root, "c", ctx, np.random.default_rng(11))
    b = make_child(system.root, "c", ctx, np.random.default_rng(11))
    assert a == b


# -- fresh_plan ---------------------------------------------------------------------------
def test_fresh_plan_initialises_every_component() -> None:
    plan = fresh_plan("r", "task", SHAPE, {"opt_lr": 0.1}, num_classes=3, num_layers=2)
    assert plan.path.hparams == {"opt_lr": 0.1, DEPTH: 2}
    assert plan.path.names == [
        "embedding",
        "cls",
        "posembed_input",
        "encoderblock_0",
        "encoderblock_1",
        "encoder_norm",
        "head",
    ]
    assert all(n.source is None for n in plan.new)
    assert plan.path.component_ids == plan.trainable_ids
    assert plan.new[-1].component.num_classes == 3


@pytest.mark.parametrize(("hparams", "depth"), [({}, SHAPE.depth), ({DEPTH: 1}, 1)])
def test_fresh_plan_depth_defaults_to_the_hparam_then_the_shape(hparams: dict, depth: int) -> None:
    plan = fresh_plan("r", "task", SHAPE, hparams, num_classes=3)
    assert depth_of(plan.path) == depth


def test_make_system_builds_its_root_with_fresh_plan() -> None:
    system = make_system()
    assert set(system.components) == set(system.root.component_ids)


# -- heads across label spaces --------------------------------------------------------
