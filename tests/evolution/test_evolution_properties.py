"""Hypothesis properties of whole multi-task evolutions (3-4 tasks, one private, revisits).

Each scenario draws the tasks, an arbitrary visit sequence, the budget and the search
options, then runs every visit end to end with the fake trainer while a hook checks one
invariant at every step.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from evo_testutil import SHAPE, FakeTrainer, make_space, make_system, run_iteration
from hypothesis import given, settings
from hypothesis import strategies as st

from mutask.trainer.evolution import (
    ChildPlan,
    IterationConfig,
    IterationResult,
    SearchSpace,
    System,
    TaskIteration,
    is_private,
)
from mutask.trainer.evolution.hparams import MU, MU_LADDER, PER_ACTION_MU_LADDER


@dataclass(frozen=True)
class Scenario:
    seed: int
    visits: tuple[str, ...]
    classes: dict[str, int]
    generations: int
    candidates: int
    per_action_mu: bool
    adapters: bool
    size_scale: float
    flops_scale: bool
    population_cap: int
    max_layers: int

    @property
    def space(self) -> SearchSpace:
        return make_space(
            per_action_mu=self.per_action_mu, adapters=self.adapters, max_layers=self.max_layers
        )

    @property
    def config(self) -> IterationConfig:
        return IterationConfig(
            generations=self.generations,
            candidates=self.candidates,
            size_scale=self.size_scale,
            flops_scale=self.flops_scale,
            population_cap=self.population_cap,
            adapters=self.adapters,
        )


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    public = [f"task{i}" for i in range(draw(st.integers(2, 3)))]
    tasks = [*public, "private:mine"]
    first_round = draw(st.permutations(tasks))
    revisits = draw(st.lists(st.sampled_from(tasks), min_size=1, max_size=6))
    return Scenario(
        seed=draw(st.integers(0, 2**32 - 1)),
        visits=(*first_round, *revisits),
        classes={t: draw(st.integers(2, 12)) for t in tasks},
        generations=draw(st.integers(1, 3)),
        candidates=draw(st.integers(1, 4)),
        per_action_mu=draw(st.booleans()),
        adapters=draw(st.booleans()),
        size_scale=draw(st.sampled_from([1.0, 0.9, 0.3])),
        flops_scale=draw(st.booleans()),
        population_cap=draw(st.integers(1, 16)),
        max_layers=draw(st.sampled_from([SHAPE.depth, SHAPE.depth + 1])),
    )


Hook = Callable[[System, TaskIteration, str, object], None]


def run_scenario(
    sc: Scenario, hook: Hook | None = None, trainer: FakeTrainer | None = None
) -> System:
    """Run every visit of the scenario; ``hook(system, it, event, payload)`` sees each step."""
    space, config = sc.space, sc.config
    system = make_system(space)
    rng = np.random.default_rng(sc.seed)
    trainer = trainer or FakeTrainer(sc.seed)
    visits: dict[str, int] = {}
    for task in sc.visits:
        iteration = visits.get(task, 0)
        visits[task] = iteration + 1
        run_iteration(
            system,
            task,
            space,
            config,
            rng,
            iteration=iteration,
            num_classes=sc.classes[task],
            trainer=trainer,
            hook=(lambda it, event, payload: hook(system, it, event, payload)) if hook else None,
        )
    return system


PROPERTY = settings(max_examples=30, deadline=None)


@given(scenarios())
@PROPERTY
def test_hparams_always_stay_on_their_ladders(sc: Scenario) -> None:
    space = sc.space

    def hook(system: System, it: TaskIteration, event: str, payload: object) -> None:
        if event == "plan":
            assert isinstance(payload, ChildPlan)
            hp = payload.path.hparams
            space.check(hp)
            assert hp[MU] in MU_LADDER
            assert set(space.ladders) <= set(hp)
            for key, value in hp.items():
                if key.startswith("_mu_/"):
                    assert value in PER_ACTION_MU_LADDER, key

    run_scenario(sc, hook)


@given(scenarios())
@PROPERTY
def test_owned_components_are_never_trainable(sc: Scenario) -> None:
    def hook(system: System, it: TaskIteration, event: str, payload: object) -> None:
        if event != "plan":
            return
        assert isinstance(payload, ChildPlan)
        owned = set(system.owner_map(exclude=it.task))  # other tasks' and the root's
        new_ids = set(payload.trainable_ids)
        assert not owned & new_ids
        for cid in owned:
            assert not it.is_trainable(cid)
        for name, cid in payload.path.components:
            # A child only references a frozen component or owns a fresh copy.
            assert cid in new_ids or cid in owned, (name, cid)
        for new in payload.new:
            assert new.source is None or new.source in it.components

    run_scenario(sc, hook)


@given(scenarios())
@PROPERTY
def test_other_tasks_never_change_during_an_iteration(sc: Scenario) -> None:
    trainer = FakeTrainer(sc.seed)
    before: dict[str, dict] = {}

    def hook(system: System, it: TaskIteration, event: str, payload: object) -> None:
        others = {t: p for t, p in system.best.items() if t != it.task}
        weights = {cid: trainer.weights[cid] for p in others.values() for cid in p.component_ids}
        if not before:
            before.update(best=others, weights=weights)
        assert others == before["best"]
        assert weights == before["weights"]  # no-forgetting: frozen weights bit-identical
        if event == "finish":
            before.clear()

    run_scenario(sc, hook, trainer)


@given(scenarios())
@PROPERTY
def test_best_score_never_decreases_during_an_iteration(sc: Scenario) -> None:
    last: dict[str, float] = {}

    def hook(system: System, it: TaskIteration, event: str, payload: object) -> None:
        best = it.best
        if best is None:
            return
        assert best.score is not None
        if event == "plan" and it.generation == 0 and "score" not in last:
            last["score"] = best.score  # the rescored previous best
        if "score" in last:
            assert best.score >= last["score"]
        last["score"] = best.score
        assert len(it.population) <= sc.population_cap
        if event == "finish":
            assert isinstance(payload, IterationResult)
            assert payload.best.score == best.score
            last.clear()

    run_scenario(sc, hook)


@given(scenarios())
@PROPERTY
def test_garbage_collection_drops_exactly_the_unreferenced(sc: Scenario) -> None:
    def hook(system: System, it: TaskIteration, event: str, payload: object) -> None:
        if event == "generation":
            used = {cid for p in it.population for cid in p.component_ids}
            assert set(it.pending) <= used
            for p in it.population:
                assert set(p.component_ids) <= set(it.components)
        if event == "finish":
            assert isinstance(payload, IterationResult)
            referenced = system.referenced()
            assert set(system.components) == referenced
            assert not set(payload.discarded) & referenced
            assert set(payload.created) <= set(payload.best.component_ids)

    run_scenario(sc, hook)


@given(scenarios())
@PROPERTY
def test_no_component_id_is_ever_reused(sc: Scenario) -> None:
    ever: set[str] = set()

    def hook(system: System, it: TaskIteration, event: str, payload: object) -> None:
        if not ever:
            ever.update(system.root.component_ids)
        if event == "plan":
            assert isinstance(payload, ChildPlan)
            for cid in payload.trainable_ids:
                assert cid not in ever, cid
                ever.add(cid)

    run_scenario(sc, hook)


@given(scenarios())
@PROPERTY
def test_private_tasks_are_never_parents_of_other_tasks(sc: Scenario) -> None:
    def hook(system: System, it: TaskIteration, event: str, payload: object) -> None:
        if event == "plan":
            assert isinstance(payload, ChildPlan)
            parent = it.known[payload.path.parent]  # type: ignore[index]
            assert parent.task == it.task or not is_private(parent.task)
            assert not any(is_private(p.task) for p in it.seeds)

    run_scenario(sc, hook)


@given(scenarios())
@PROPERTY
def test_new_components_match_the_shape_and_the_task(sc: Scenario) -> None:
    def hook(system: System, it: TaskIteration, event: str, payload: object) -> None:
        if event != "plan":
            return
        assert isinstance(payload, ChildPlan)
        names = {n.component.name for n in payload.new}
        assert {"encoder_norm", "head"} <= names  # always cloned or fresh
        for n in payload.new:
            c = n.component
            assert c.num_params == SHAPE.component_params(
                c.name, num_classes=c.num_classes, adapter_dim=c.adapter_dim
            )
            if c.name == "head":
                assert c.num_classes == sc.classes[it.task]
        if not sc.adapters:
            assert not payload.path.adapters

    run_scenario(sc, hook)


@given(scenarios())
@PROPERTY
def test_retained_paths_are_complete_and_owned(sc: Scenario) -> None:
    system = run_scenario(sc)
    assert set(system.tasks) == set(sc.visits)
    for task, path in system.best.items():
        assert path.task == task
        assert set(path.component_ids) <= set(system.components)
        for cid in path.component_ids:
            assert task in system.owners(cid)
        if task in sc.classes:
            head = system.components[path.component("head")]  # type: ignore[index]
            assert head.num_classes == sc.classes[task]


@given(scenarios(), st.data())
@settings(max_examples=15, deadline=None)
def test_resume_from_any_generation_replays_the_same_iteration(
    sc: Scenario, data: st.DataObject
) -> None:
    space, config = sc.space, sc.config
    system = run_scenario(sc)  # a grown system to run one more iteration on
    task = data.draw(st.sampled_from(sorted(set(sc.visits))))
    stop = data.draw(st.integers(0, sc.generations))
    copy_system = copy.deepcopy(system)

    def record(log: list) -> Callable[[TaskIteration, str, object], None]:
        return lambda it, event, payload: log.append((event, payload))

    straight: list = []
    run_iteration(
        system,
        task,
        space,
        config,
        np.random.default_rng(1),
        iteration=99,
        num_classes=sc.classes[task],
        trainer=FakeTrainer(1),
        hook=record(straight),
    )
    trainer = FakeTrainer(1)
    it, _ = run_iteration(
        copy_system,
        task,
        space,
        config,
        np.random.default_rng(1),
        iteration=99,
        num_classes=sc.classes[task],
        trainer=trainer,
        generations=stop,
    )
    state = json.loads(json.dumps(it.state_dict()))
    resumed_it = TaskIteration(
        copy_system, task, sc.classes[task], space, config, np.random.default_rng(2), 99
    )
    resumed_it.load_state_dict(state)
    resumed: list = []
    run_iteration(
        copy_system,
        task,
        space,
        config,
        np.random.default_rng(3),
        trainer=trainer,
        it=resumed_it,
        hook=record(resumed),
    )
    assert resumed == straight[len(straight) - len(resumed) :]
    assert len(resumed) == len(straight) - stop * (2 * sc.candidates + 1)
    assert copy_system.best == system.best
    assert copy_system.components == system.components
