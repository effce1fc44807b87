"""One task iteration end to end: data hparams, retention, locking, GC, resume, replay."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

import numpy as np
import pytest
from evo_testutil import (
    FakeTrainer,
    ScriptedRng,
    make_space,
    make_system,
    retain_task,
    run_iteration,
)

from mutask.trainer.evolution import (
    ROOT_TASK,
    IterationConfig,
    Path,
    SearchSpace,
    System,
    TaskIteration,
    large_space,
)
from mutask.trainer.evolution.system import path_params


def start(system: System, space: SearchSpace, task: str = "a", **config: int) -> TaskIteration:
    cfg = IterationConfig(**{"generations": 3, "candidates": 4, **config})
    return TaskIteration(system, task, 10, space, cfg, np.random.default_rng(0))


# -- start of an iteration ----------------------------------------------------------------
def test_seeds_are_a_shuffle_of_the_other_public_tasks_and_the_root(
    system: System, space: SearchSpace
) -> None:
    for task in ("a", "b", "c", "d", "private:p"):
        retain_task(system, task)
    orders = set()
    for seed in range(20):
        cfg = IterationConfig(generations=1, candidates=1)
        it = TaskIteration(system, "a", 10, space, cfg, np.random.default_rng(seed))
        assert sorted(p.task for p in it.seeds) == [ROOT_TASK, "b", "c", "d"]
        orders.add(tuple(p.task for p in it.seeds))
    assert len(orders) > 1


def test_a_first_visit_starts_with_an_empty_population(system: System, space) -> None:
    assert start(system, space).population == []


def test_own_lock_is_lifted_on_a_revisit(system: System, space: SearchSpace) -> None:
    own = retain_task(system, "a", own=("head", "encoderblock_1"))
    shared = dict(own.components)
    other = Path("b/best", "b", {}, (("encoderblock_1", shared["encoderblock_1"]),))
    system.retain(other)
    it = start(system, space, "a")
    assert it.is_trainable("a/head")  # only a owns it
    assert not it.is_trainable("a/encoderblock_1")  # b shares it
    assert not it.is_trainable("root/embedding")  # the root owns it


def test_previous_best_is_rescored_into_the_population(system: System, space) -> None:
    own = retain_task(system, "a")
    system.retain(Path("a/best", "a", {}, own.components, quality=0.8, score=0.1))
    it = start(system, space, "a", size_scale=1)
    assert [(p.id, p.quality, p.score) for p in it.population] == [("a/best", 0.8, 0.8)]


# -- data hyperparameters -----------------------------------------------------------------
def test_data_hparams_are_shared_by_every_candidate_of_a_generation(system, space) -> None:
    seen: dict[int, list[dict]] = {}

    def hook(it: TaskIteration, event: str, payload: object) -> None:
        if event == "plan":
            hp = payload.path.hparams  # type: ignore[attr-defined]
            seen.setdefault(it.generation, []).append(
                {k: v for k, v in hp.items() if k.startswith("ds_")}
            )

    cfg = IterationConfig(generations=12, candidates=4)
    run_iteration(system, "a", space, cfg, np.random.default_rng(2), hook=hook)
    per_generation = []
    for children in seen.values():
        assert all(child == children[0] for child in children)
        per_generation.append(tuple(sorted(children[0].items())))
    assert len(set(per_generation)) > 1  # resampled across generations


def test_data_hparams_are_the_leaders_when_nothing_mutates(system, space) -> None:
    it = start(system, space)
    it.rng = ScriptedRng(default=0.99)  # type: ignore[assignment]
    data = it.data_hparams()
    assert data == {k: v for k, v in system.root.hparams.items() if k.startswith("ds_")}


def test_data_hparams_follow_the_populations_leader(system: System, space) -> None:
    own = retain_task(system, "a")
    hparams = {**own.hparams, "ds_crop": False, "ds_hue_delta": 0.2}
    system.retain(Path("a/best", "a", hparams, own.components, quality=0.5, score=0.5))
    it = start(system, space, "a")
    it.rng = ScriptedRng(default=0.99)  # type: ignore[assignment]
    data = it.data_hparams()
    assert data["ds_crop"] is False
    assert data["ds_hue_delta"] == 0.2


def test_fixed_data_hparams_hold_whatever_the_leader_had(system: System) -> None:
    """A space that does not tune crops and flips (small images) gives every generation its
    fixed values, even when the parent's path recorded others, while the rest still mutate."""
    small = large_space(max_layers=2, fixed={"ds_crop": False, "ds_flip_left_right": False})
    own = retain_task(system, "a")
    hparams = {**own.hparams, "ds_crop": True, "ds_flip_left_right": True}
    system.retain(Path("a/best", "a", hparams, own.components, quality=0.5, score=0.5))
    it = start(system, small, "a")
    it.rng = ScriptedRng(default=0.0)  # every mutation that can happen does
    data = it.data_hparams()
    assert data["ds_crop"] is False and data["ds_flip_left_right"] is False
    assert "ds_crop" not in small.data_keys() and "ds_hue_delta" in small.data_keys()
    assert data["ds_hue_delta"] != hparams.get("ds_hue_delta", 0.0)  # still tuned


def test_data_hparams_include_only_data_keys(system: System, space) -> None:
    data = start(system, space).data_hparams()
    assert data
    assert all(k.startswith("ds_") for k in data)


def test_data_hparams_per_action_mu_is_carried_by_the_children(system: System) -> None:
    space = make_space(per_action_mu=True)
    it = start(system, space)
    data = it.data_hparams()
    plan = it.propose(0, data)
    for key in space.data_keys():
        assert plan.path.hparams[f"_mu_/{key}"] == data[f"_mu_/{key}"]


# -- proposing and retention --------------------------------------------------------------
def test_child_ids_name_task_iteration_generation_and_candidate(system, space) -> None:
    cfg = IterationConfig(generations=1, candidates=2)
    it = TaskIteration(system, "a", 10, space, cfg, np.random.default_rng(0), iteration=4)
    data = it.data_hparams()
    assert [it.propose(k, data).path.id for k in range(2)] == ["a~4.0.0", "a~4.0.1"]


def test_proposing_counts_the_parents_offspring(system: System, space) -> None:
    it = start(system, space, candidates=3)
    data = it.data_hparams()
    for k in range(3):
        it.propose(k, data)
    assert it.offspring == {"root": 3}


def test_a_parent_with_children_is_chosen_less_often(system: System, space) -> None:
    # Two equally good own paths: the leader is taken first (0.5 ** 0 = 1); once it has a
    # child it is accepted only half the time, else the runner-up is taken.
    it = start(system, space, candidates=2, size_scale=1)
    data = it.data_hparams()
    first, second = it.propose(0, data), it.propose(1, data)
    it.report(first.path, 0.5)
    it.report(second.path, 0.5)
    it.end_generation()
    again = 0
    for seed in range(300):
        probe = copy.deepcopy(it)
        probe.rng = np.random.default_rng(seed)
        assert probe.propose(0, data).path.parent == first.path.id
        again += probe.propose(1, data).path.parent == first.path.id
    assert abs(again / 300 - 0.5) < 0.1


def test_a_cross_task_child_always_joins(system: System, space) -> None:
    it = start(system, space)
    plan = it.propose(0, it.data_hparams())
    assert it.bar(plan.path) == float("-inf")
    scored, joined = it.report(plan.path, 0.0)
    assert joined
    assert it.population == [scored]


def report_child_of_child(it: TaskIteration, quality: float) -> tuple[Path, Path, bool]:
    first = it.propose(0, it.data_hparams())
    parent, _ = it.report(first.path, 0.5)
    it.end_generation()
    child = it.propose(0, it.data_hparams())  # the only, unexplored, population member
    assert child.path.parent == parent.id
    scored, joined = it.report(child.path, quality)
    return parent, scored, joined


def test_same_task_child_with_the_parents_score_does_not_join(system, space) -> None:
    it = start(system, space, size_scale=1)
    parent, _, joined = report_child_of_child(it, 0.5)
    assert not joined
    assert it.population == [parent]


def test_same_task_child_that_beats_its_parent_joins(system, space) -> None:
    it = start(system, space, size_scale=1)
    parent, child, joined = report_child_of_child(it, 0.51)
    assert joined
    assert it.bar(child) == parent.score == 0.5
    assert it.population == [child, parent]


def test_population_is_capped_keeping_the_best(system: System, space) -> None:
    it = start(system, space, candidates=6, population_cap=3, size_scale=1)
    data = it.data_hparams()
    plans = [it.propose(k, data) for k in range(6)]
    assert {p.path.parent for p in plans} == {"root"}  # cross-task: all beat their bar
    joins = [
        it.report(plan.path, q)[1]
        for plan, q in zip(plans, [0.3, 0.9, 0.1, 0.5, 0.7, 0.2], strict=True)
    ]
    # the last child beats its bar but falls off the full population at once: not joined
    assert joins == [True, True, True, True, True, False]
    assert [p.quality for p in it.population] == [0.9, 0.7, 0.5]


def test_end_generation_drops_pending_components_of_rejected_children(system, space) -> None:
    it = start(system, space, size_scale=1, population_cap=1)
    data = it.data_hparams()
    good, bad = it.propose(0, data), it.propose(1, data)
    it.report(good.path, 0.9)
    it.report(bad.path, 0.1)  # joins, then falls off the capped population
    dropped = it.end_generation()
    assert dropped == sorted(bad.trainable_ids)
    assert set(it.pending) == set(good.trainable_ids)
    assert it.generation == 1


def test_scores_use_the_size_penalty(system: System, space) -> None:
    it = start(system, space, size_scale=0.5)
    plan = it.propose(0, it.data_hparams())
    scored, _ = it.report(plan.path, 0.8)
    accounted = it.scorer().accounted_params(plan.path)
    assert scored.score == pytest.approx(0.8 * 0.5 ** (accounted / system.root_params()))
    assert scored.score < 0.8


# -- finish -------------------------------------------------------------------------------
def test_finish_without_any_candidate_is_an_error(system: System, space) -> None:
    it = start(system, space, generations=0)
    with pytest.raises(RuntimeError, match="no candidate"):
        it.finish()


def test_finish_retains_the_best_and_locks_its_components(system, space, config) -> None:
    it, result = run_iteration(system, "a", space, config, np.random.default_rng(0))
    assert result is not None
    assert system.best["a"] == result.best == max(it.population, key=lambda p: p.score)
    assert set(result.created) <= set(system.components)
    for cid in result.best.component_ids:
        assert "a" in system.owners(cid)
    other = start(system, space, "b")
    assert not any(other.is_trainable(cid) for cid in result.best.component_ids)


def test_finish_keeps_exactly_the_referenced_components(system, space, config) -> None:
    _, result = run_iteration(system, "a", space, config, np.random.default_rng(0))
    assert result is not None
    assert set(system.components) == system.referenced()
    assert not set(result.discarded) & set(system.components)


def test_created_are_the_best_paths_new_components(system, space, config) -> None:
    _, result = run_iteration(system, "a", space, config, np.random.default_rng(0))
    assert result is not None
    assert result.created == [c for c in result.best.component_ids if not c.startswith("root/")]


def test_a_new_best_releases_the_old_bests_exclusive_components(system, space, config) -> None:
    _, first = run_iteration(system, "a", space, config, np.random.default_rng(0))
    assert first is not None
    system.retain(first.best.scored(0.0, 0.0))  # make it easy to beat
    _, second = run_iteration(system, "a", space, config, np.random.default_rng(1), iteration=1)
    assert second is not None and second.best.id != first.best.id
    released = set(first.created) - set(second.best.component_ids)
    assert released
    assert released <= set(second.discarded)
    assert not released & set(system.components)


def test_unbeaten_previous_best_is_kept_on_a_revisit(system, space, config) -> None:
    _, first = run_iteration(system, "a", space, config, np.random.default_rng(0))
    assert first is not None
    system.retain(first.best.scored(1.0, 1.0))  # unbeatable
    _, second = run_iteration(system, "a", space, config, np.random.default_rng(1), iteration=1)
    assert second is not None
    assert second.best.id == first.best.id
    assert second.created == []
    assert set(first.best.component_ids) <= set(system.components)


def test_frozen_weights_never_change_during_another_tasks_iteration(system, space) -> None:
    cfg = IterationConfig(generations=3, candidates=4)
    trainer = FakeTrainer(seed=1)
    rng = np.random.default_rng(0)
    run_iteration(system, "a", space, cfg, rng, trainer=trainer)
    frozen = {cid: trainer.weights[cid] for cid in system.best["a"].component_ids}
    run_iteration(system, "b", space, cfg, rng, trainer=trainer)
    run_iteration(system, "a", space, cfg, rng, iteration=1, trainer=trainer)
    run_iteration(system, "b", space, cfg, rng, iteration=1, trainer=trainer)
    for cid, value in frozen.items():
        assert trainer.weights.get(cid, value) == value


def test_path_params_of_the_best_add_up(system, space, config) -> None:
    _, result = run_iteration(system, "a", space, config, np.random.default_rng(0))
    assert result is not None
    assert path_params(result.best, system.components) == sum(
        system.components[c].num_params for c in result.best.component_ids
    )


# -- resume and replay --------------------------------------------------------------------
def recorder(log: list) -> Callable[[TaskIteration, str, object], None]:
    """A run_iteration hook logging every decision (plans, scores, population, results)."""

    def hook(it: TaskIteration, event: str, payload: object) -> None:
        log.append((event, payload, tuple(p.id for p in it.population), it.offspring.copy()))

    return hook


@pytest.mark.parametrize("per_action_mu", [False, True])
def test_resume_mid_iteration_replays_the_same_decisions(per_action_mu: bool) -> None:
    space = make_space(per_action_mu=per_action_mu)
    system = make_system(space)
    for task in ("b", "private:p"):
        retain_task(system, task)
    cfg = IterationConfig(generations=5, candidates=3, size_scale=0.9)
    interrupted = copy.deepcopy(system)

    straight: list = []
    rng = np.random.default_rng(5)
    run_iteration(system, "a", space, cfg, rng, trainer=FakeTrainer(5), hook=recorder(straight))

    # The same run, killed after generation 2, its state saved as JSON and resumed.
    trainer = FakeTrainer(5)
    rng = np.random.default_rng(5)
    it, _ = run_iteration(interrupted, "a", space, cfg, rng, trainer=trainer, generations=2)
    state = json.loads(json.dumps(it.state_dict()))
    fresh = TaskIteration(interrupted, "a", 10, space, cfg, np.random.default_rng(999))
    fresh.load_state_dict(state)
    assert fresh.generation == 2
    resumed: list = []
    rng = np.random.default_rng(0)  # ignored: the RNG state comes from the resume state
    run_iteration(
        interrupted, "a", space, cfg, rng, trainer=trainer, it=fresh, hook=recorder(resumed)
    )

    per_generation = 2 * cfg.candidates + 1  # plans, reports, end of generation
    assert len(resumed) == len(straight) - 2 * per_generation
    assert resumed == straight[2 * per_generation :]
    assert interrupted.best == system.best
    assert interrupted.components == system.components


def test_resume_rejects_a_state_of_another_iteration(system: System, space) -> None:
    state = start(system, space, "a").state_dict()
    other = TaskIteration(
        system, "a", 10, space, IterationConfig(1, 1), np.random.default_rng(0), iteration=1
    )
    with pytest.raises(ValueError, match="resume state"):
        other.load_state_dict(state)


def test_state_dict_is_json_ready(system: System, space, config) -> None:
    it, _ = run_iteration(system, "a", space, config, np.random.default_rng(0), generations=1)
    state = it.state_dict()
    assert json.loads(json.dumps(state)) == state
