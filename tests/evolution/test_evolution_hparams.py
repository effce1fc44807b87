"""Ladders, the search space, and the self-tuned mutation probability µ."""

from __future__ import annotations

import numpy as np
import pytest
from evo_testutil import ScriptedRng, make_space
from hypothesis import given, settings
from hypothesis import strategies as st

from mutask.trainer.evolution import Ladder, SearchSpace, large_space
from mutask.trainer.evolution.hparams import (
    DEPTH,
    MU,
    MU_LADDER,
    PER_ACTION_MU_LADDER,
    MuSource,
    mutate_keys,
)

LADDER = Ladder((1, 2, 3, 4, 5), 3)


# -- Ladder -----------------------------------------------------------------------------
def test_ladder_rejects_default_off_the_ladder() -> None:
    with pytest.raises(ValueError, match="not on the ladder"):
        Ladder((1, 2), 3)


def test_ladder_index_rejects_value_off_the_ladder() -> None:
    with pytest.raises(ValueError, match="not on the ladder"):
        LADDER.index(7)


def test_step_moves_up_on_low_draw_and_down_on_high_draw() -> None:
    assert LADDER.step(3, ScriptedRng([0.49])) == 4
    assert LADDER.step(3, ScriptedRng([0.5])) == 2


def test_step_is_clipped_at_both_ends() -> None:
    assert LADDER.step(5, ScriptedRng([0.0])) == 5
    assert LADDER.step(1, ScriptedRng([0.9])) == 1


def test_step_goes_up_or_down_fifty_fifty() -> None:
    rng = np.random.default_rng(0)
    ups = sum(LADDER.step(3, rng) == 4 for _ in range(20_000))
    assert abs(ups / 20_000 - 0.5) < 0.015


@given(
    values=st.lists(st.integers(), min_size=1, max_size=12, unique=True),
    data=st.data(),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=100, deadline=None)
def test_step_stays_on_the_ladder_and_moves_at_most_one_rung(
    values: list[int], data: st.DataObject, seed: int
) -> None:
    ladder = Ladder(tuple(values), values[0])
    value = data.draw(st.sampled_from(values))
    stepped = ladder.step(value, np.random.default_rng(seed))
    assert stepped in ladder.values
    assert abs(ladder.index(stepped) - ladder.index(value)) <= 1


# -- the search space --------------------------------------------------------------------
def test_mu_ladder_is_0_10_to_0_30_in_steps_of_0_02() -> None:
    assert MU_LADDER == (0.1, 0.12, 0.14, 0.16, 0.18, 0.2, 0.22, 0.24, 0.26, 0.28, 0.3)


def test_per_action_mu_ladder_is_0_02_to_0_30_in_steps_of_0_02() -> None:
    assert PER_ACTION_MU_LADDER[0] == 0.02
    assert PER_ACTION_MU_LADDER[-1] == 0.3
    assert len(PER_ACTION_MU_LADDER) == 15
    assert np.allclose(np.diff(PER_ACTION_MU_LADDER), 0.02)


def test_large_space_defaults_match_the_spec_table() -> None:
    defaults = large_space(max_layers=24).defaults()
    assert defaults == {
        "_mu_": 0.2,
        "opt_lr": 0.01,
        "opt_lr_warmup_ratio": 0.05,
        "opt_momentum": 0.9,
        "opt_nesterov": False,
        "num_layers": 24,
        "ds_crop": True,
        "ds_flip_left_right": True,
        "ds_area_range_min": 0.05,
        "ds_aspect_ratio_range_min": 0.75,
        "ds_brightness_delta": 0.0,
        "ds_contrast_delta": 0.0,
        "ds_saturation_delta": 0.0,
        "ds_hue_delta": 0.0,
        "adapter_dim": 16,
        "ds_image_size": 384,
    }


def test_large_space_lr_ladder_matches_the_spec() -> None:
    lr = large_space(max_layers=2).ladders["opt_lr"].values
    assert lr == (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


def test_adapter_dim_is_tunable_only_with_adapters() -> None:
    assert large_space(max_layers=2).ladders["adapter_dim"].values == (8, 16, 32, 64, 128)
    assert "adapter_dim" not in large_space(max_layers=2, adapters=False).ladders


def test_image_size_is_fixed_not_tunable() -> None:
    space = large_space(max_layers=2, image_size=224)
    assert space.fixed == {"ds_image_size": 224}
    assert "ds_image_size" not in space.ladders


def test_depth_is_fixed_at_the_maximum_without_depth_tuning() -> None:
    assert large_space(max_layers=6).ladders[DEPTH].values == (1, 2, 3, 4, 5, 6)
    space = large_space(max_layers=6, tune_depth=False, image_size=224)
    assert DEPTH not in space.ladders
    assert space.fixed == {"ds_image_size": 224, DEPTH: 6}
    assert space.defaults()[DEPTH] == 6


def test_model_keys_exclude_mu_and_data_keys() -> None:
    keys = make_space().model_keys()
    assert MU not in keys
    assert not [k for k in keys if k.startswith("ds_")]
    assert {"opt_lr", "num_layers", "adapter_dim"} <= set(keys)


def test_data_keys_are_exactly_the_tunable_ds_keys() -> None:
    space = make_space()
    assert set(space.data_keys()) == {k for k in space.ladders if k.startswith("ds_")}


def test_check_names_the_key_off_its_ladder() -> None:
    space = make_space()
    space.check(space.defaults())
    with pytest.raises(ValueError, match="opt_lr"):
        space.check({**space.defaults(), "opt_lr": 0.3})


# -- µ ------------------------------------------------------------------------------------
def mu_only_space(per_action_mu: bool = False) -> SearchSpace:
    return SearchSpace({MU: Ladder(MU_LADDER, 0.2), "k": LADDER}, per_action_mu=per_action_mu)


def test_mu_is_kept_when_its_draw_fails() -> None:
    hp = {MU: 0.2}
    MuSource(hp, mu_only_space(), ScriptedRng([0.2]))
    assert hp[MU] == 0.2


def test_mu_steps_one_rung_with_probability_mu() -> None:
    hp = {MU: 0.2}
    MuSource(hp, mu_only_space(), ScriptedRng([0.19, 0.0]))
    assert hp[MU] == 0.22


def test_missing_mu_starts_from_its_default() -> None:
    hp: dict = {}
    MuSource(hp, mu_only_space(), ScriptedRng([0.99]))
    assert hp[MU] == 0.2


def test_mu_is_mutated_first_and_its_new_value_is_used() -> None:
    # µ 0.10 → 0.12 (draw 0.05 < 0.10, step up), then the key's draw 0.11 only passes
    # against the new µ (0.11 < 0.12), not the old one (0.11 ≥ 0.10).
    hp = {MU: 0.1, "k": 3}
    space = mu_only_space()
    rng = ScriptedRng([0.05, 0.0, 0.11, 0.0])
    mu = MuSource(hp, space, rng)
    mutate_keys(hp, ["k"], space, mu, rng)
    assert hp[MU] == 0.12
    assert hp["k"] == 4


def test_key_mutation_rate_follows_the_mutated_mu() -> None:
    space = SearchSpace({MU: Ladder(MU_LADDER, 0.2), **{f"k{i}": LADDER for i in range(50)}})
    rng = np.random.default_rng(42)
    changed, expected = 0, 0.0
    for _ in range(400):
        hp = {MU: 0.3, **{f"k{i}": 3 for i in range(50)}}
        mu = MuSource(hp, space, rng)
        mutate_keys(hp, space.model_keys(), space, mu, rng)
        changed += sum(hp[f"k{i}"] != 3 for i in range(50))
        expected += 50 * float(hp[MU])
    assert abs(changed / expected - 1) < 0.03


def test_per_action_mode_creates_one_mu_key_per_action() -> None:
    space = mu_only_space(per_action_mu=True)
    hp = {MU: 0.2, "k": 3}
    rng = np.random.default_rng(0)
    mu = MuSource(hp, space, rng)
    mutate_keys(hp, ["k"], space, mu, rng)
    mu("clone:head")
    assert {"_mu_/k", "_mu_/clone:head"} <= set(hp)
    assert hp["_mu_/k"] in PER_ACTION_MU_LADDER
    assert hp["_mu_/clone:head"] in PER_ACTION_MU_LADDER


def test_per_action_mu_starts_at_0_2_and_steps_with_its_own_probability() -> None:
    hp = {MU: 0.2}
    mu = MuSource(hp, mu_only_space(per_action_mu=True), ScriptedRng([0.99, 0.19, 0.9]))
    assert mu("a") == 0.18
    assert hp["_mu_/a"] == 0.18


def test_per_action_mu_is_kept_when_its_own_draw_fails() -> None:
    hp = {MU: 0.2, "_mu_/a": 0.04}
    mu = MuSource(hp, mu_only_space(per_action_mu=True), ScriptedRng([0.99, 0.04]))
    assert mu("a") == 0.04


def test_per_action_mu_mutation_rate_is_its_own_value() -> None:
    rng = np.random.default_rng(8)
    space = mu_only_space(per_action_mu=True)
    moved = 0
    for _ in range(10_000):
        hp = {MU: 0.2, "_mu_/a": 0.06}
        moved += MuSource(hp, space, rng)("a") != 0.06
    assert abs(moved / 10_000 - 0.06) < 0.01


def test_per_action_mu_is_mutated_only_the_first_time_it_is_asked_for() -> None:
    hp = {MU: 0.2}
    rng = ScriptedRng([0.99], default=0.0)  # every later draw would mutate (upwards)
    mu = MuSource(hp, mu_only_space(per_action_mu=True), rng)
    first = mu("a")
    calls = rng.calls
    assert mu("a") == first
    assert rng.calls == calls


def test_per_action_mu_off_its_ladder_restarts_from_the_default() -> None:
    hp = {MU: 0.2, "_mu_/a": 0.5}
    mu = MuSource(hp, mu_only_space(per_action_mu=True), ScriptedRng([0.99]))
    assert mu("a") == 0.2


def test_classic_mode_uses_the_single_mu_for_every_action() -> None:
    hp = {MU: 0.24}
    mu = MuSource(hp, mu_only_space(), ScriptedRng([0.99]))
    assert mu("clone:head") == mu("adapter:0") == 0.24
    assert not [k for k in hp if k.startswith("_mu_/")]


@given(
    seed=st.integers(0, 2**32 - 1),
    per_action_mu=st.booleans(),
    rounds=st.integers(1, 60),
)
@settings(max_examples=60, deadline=None)
def test_hparams_stay_on_their_ladders_across_many_mutations(
    seed: int, per_action_mu: bool, rounds: int
) -> None:
    space = make_space(per_action_mu=per_action_mu)
    rng = np.random.default_rng(seed)
    hp = space.defaults()
    for _ in range(rounds):
        mu = MuSource(hp, space, rng)
        mutate_keys(hp, [*space.model_keys(), *space.data_keys()], space, mu, rng)
        space.check(hp)
        assert hp[MU] in MU_LADDER
        per_action = {k: v for k, v in hp.items() if k.startswith("_mu_/")}
        assert all(v in PER_ACTION_MU_LADDER for v in per_action.values())
        assert bool(per_action) == per_action_mu


def test_defaults_can_be_moved_along_the_same_ladders() -> None:
    space = large_space(max_layers=4, defaults={"opt_lr": 0.05, "ds_crop": False})
    spec = large_space(max_layers=4)
    assert space.defaults()["opt_lr"] == 0.05 and space.defaults()["ds_crop"] is False
    assert space.ladders["opt_lr"].values == spec.ladders["opt_lr"].values
    with pytest.raises(ValueError, match="ladder"):
        large_space(max_layers=4, defaults={"opt_lr": 0.03})  # not a rung
    with pytest.raises(ValueError, match="no ladder"):
        large_space(max_layers=4, defaults={"nope": 1})


def test_fixed_keys_leave_the_search_at_a_value_of_their_ladder() -> None:
    space = large_space(max_layers=2, fixed={"ds_crop": False})
    assert "ds_crop" not in space.ladders and space.fixed["ds_crop"] is False
    assert space.defaults()["ds_crop"] is False
    with pytest.raises(ValueError, match="cannot fix ds_crop='yes'"):
        large_space(max_layers=2, fixed={"ds_crop": "yes"})
    with pytest.raises(ValueError, match="cannot fix nope"):
        large_space(max_layers=2, fixed={"nope": 1})
