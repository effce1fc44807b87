"""One task iteration: generations of candidates, retention, then locking and GC.

The engine drives it: for each generation it asks for the generation's data hparams, for K
child plans (parent selection + mutation), trains each plan and reports its quality back.
At the end the best path is retained (its task becomes owner of its components) and
everything unreferenced is dropped. The whole state round-trips through plain dicts, so a
killed run can resume at the next generation with the same RNG stream.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from mutask.trainer.evolution.hparams import (
    DATA_PREFIX,
    PER_ACTION_PREFIX,
    HValue,
    MuSource,
    SearchSpace,
    mutate_keys,
)
from mutask.trainer.evolution.mutation import ChildPlan, MutationContext, make_child
from mutask.trainer.evolution.scoring import ScoreBreakdown, Scorer
from mutask.trainer.evolution.selection import by_score, select_parent
from mutask.trainer.evolution.system import Component, Path, System


@dataclass(frozen=True)
class IterationConfig:
    """Budget and scoring options of one task iteration."""

    generations: int
    candidates: int
    size_scale: float = 1.0
    flops_scale: bool = False
    population_cap: int = 16
    adapters: bool = True


@dataclass(frozen=True)
class IterationResult:
    """The retained path, the components it created, and what was discarded."""

    best: Path
    created: list[str]
    discarded: list[str]


class TaskIteration:
    """G generations of K candidates for one task over a fixed system snapshot."""

    def __init__(
        self,
        system: System,
        task: str,
        num_classes: int,
        space: SearchSpace,
        config: IterationConfig,
        rng: np.random.Generator,
        iteration: int = 0,
        label_space: str = "",
    ) -> None:
        self.system = system
        self.label_space = label_space
        self.task = task
        self.num_classes = num_classes
        self.space = space
        self.config = config
        self.rng = rng
        self.iteration = iteration
        self.owners = system.owner_map(exclude=task)
        self.generation = 0
        self.offspring: dict[str, int] = {}
        self.pending: dict[str, Component] = {}
        self.known: dict[str, Path] = {p.id: p for p in system.iter_paths()}
        seeds = system.seeds_for(task)
        self.seeds: list[Path] = [seeds[int(i)] for i in rng.permutation(len(seeds))]
        self.population: list[Path] = []
        previous = system.best.get(task)
        if previous is not None and previous.quality is not None:
            rescored = self._rescore(previous, previous.quality)
            self.population.append(rescored)
            self.known[rescored.id] = rescored

    # -- system view -------------------------------------------------------------------
    @property
    def components(self) -> dict[str, Component]:
        return {**self.system.components, **self.pending}

    def is_trainable(self, component_id: str) -> bool:
        """Trainable iff nobody but this task owns it (the task's own lock is lifted)."""
        return not self.owners.get(component_id)

    def scorer(self) -> Scorer:
        flops_ref = self.system.root_flops() if self.config.flops_scale else 0
        return Scorer(
            self.config.size_scale,
            self.system.root_params(),
            self.owners,
            self.components,
            self.system.shape,
            flops_ref,
        )

    def breakdown(self, path: Path, quality: float) -> ScoreBreakdown:
        return self.scorer().breakdown(path, quality)

    def _rescore(self, path: Path, quality: float) -> Path:
        return path.scored(quality, self.breakdown(path, quality).score)

    @property
    def best(self) -> Path | None:
        ranked = by_score(self.population)
        return ranked[0] if ranked else None

    # -- one generation ----------------------------------------------------------------
    def data_hparams(self) -> dict[str, HValue]:
        """Data hparams shared by this generation: the leader's, mutated with its µ."""
        base = self.best or (self.seeds[0] if self.seeds else None)
        hp: dict[str, HValue] = {**self.space.defaults(), **(base.hparams if base else {})}
        hp.update(self.space.fixed)  # what this space does not tune, whatever the parent had
        mu = MuSource(hp, self.space, self.rng)
        mutate_keys(hp, self.space.data_keys(), self.space, mu, self.rng)
        data_mu = PER_ACTION_PREFIX + DATA_PREFIX  # µ2Net+: the data keys' own µ persist
        return {k: v for k, v in hp.items() if k.startswith((DATA_PREFIX, data_mu))}

    def propose(self, candidate: int, data_hparams: Mapping[str, HValue]) -> ChildPlan:
        """Select a parent and make one mutated child of it."""
        parent = select_parent(self.population, self.seeds, self.offspring, self.rng)
        self.offspring[parent.id] = self.offspring.get(parent.id, 0) + 1
        ctx = MutationContext(
            task=self.task,
            num_classes=self.num_classes,
            shape=self.system.shape,
            space=self.space,
            components=self.components,
            is_trainable=self.is_trainable,
            lookup=self.known.get,
            adapters=self.config.adapters,
            root=self.system.root,
            label_space=self.label_space,
        )
        child_id = f"{self.task}~{self.iteration}.{self.generation}.{candidate}"
        plan = make_child(parent, child_id, ctx, self.rng, data_hparams)
        for new in plan.new:
            self.pending[new.component.id] = new.component
        self.known[plan.path.id] = plan.path
        return plan

    def bar(self, path: Path) -> float:
        """The score a child must reach: its parent's for a same-task parent, else -inf."""
        parent = self.known.get(path.parent) if path.parent else None
        if parent is not None and parent.task == self.task and parent.score is not None:
            return parent.score
        return float("-inf")

    def report(self, path: Path, quality: float) -> tuple[Path, bool]:
        """Score a trained child; it joins the population iff it beat its bar."""
        scored = self._rescore(path, quality)
        assert scored.score is not None
        joined = scored.score > self.bar(path)
        if joined:
            ranked = by_score([*self.population, scored])[: self.config.population_cap]
            joined = any(p.id == scored.id for p in ranked)  # the cap may drop it at once
            self.population = ranked
        self.known[scored.id] = scored
        return scored, joined

    def end_generation(self) -> list[str]:
        """Advance the generation; drop pending components no population member uses."""
        self.generation += 1
        used = {cid for p in self.population for cid in p.component_ids}
        dropped = sorted(cid for cid in self.pending if cid not in used)
        for cid in dropped:
            del self.pending[cid]
        return dropped

    # -- final phase -------------------------------------------------------------------
    def own_components(self, path: Path) -> list[str]:
        """The components of ``path`` created in this iteration, in path order: the only
        ones a final training phase may train (nothing any task owns)."""
        return [cid for cid in path.component_ids if cid in self.pending]

    def refine(self, path: Path, quality: float) -> Path:
        """``path`` after more training of its own components (the final phase): rescored
        at its new validation quality, in its place in the population."""
        if path.id not in {p.id for p in self.population}:
            raise KeyError(f"path {path.id} is not in the population of task {self.task}")
        if not self.own_components(path):
            raise ValueError(f"path {path.id} has no component of its own to train")
        scored = self._rescore(path, quality)
        self.population = by_score([scored if p.id == path.id else p for p in self.population])
        self.known[scored.id] = scored
        return scored

    @property
    def done(self) -> bool:
        return self.generation >= self.config.generations

    def finish(self) -> IterationResult:
        """Retain the best path, lock its components to the task, collect garbage."""
        best = self.best
        if best is None:
            raise RuntimeError(f"task {self.task}: no candidate joined the population")
        created = [cid for cid in best.component_ids if cid in self.pending]
        self.system.add_components(self.pending[cid] for cid in created)
        discarded = sorted(set(self.pending) - set(created))
        self.system.retain(best)
        discarded += self.system.collect_garbage()
        self.pending = {}
        return IterationResult(best, created, discarded)

    # -- resume ------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume at the next generation (plain, JSON-ready)."""
        return {
            "task": self.task,
            "iteration": self.iteration,
            "generation": self.generation,
            "offspring": dict(self.offspring),
            "pending": [c.to_dict() for c in self.pending.values()],
            "known": [p.to_dict() for p in self.known.values()],
            "seeds": [p.id for p in self.seeds],
            "population": [p.id for p in self.population],
            "rng": _jsonable(self.rng.bit_generator.state),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state["task"] != self.task or state["iteration"] != self.iteration:
            raise ValueError(
                f"resume state is for task {state['task']} iteration {state['iteration']}, "
                f"not {self.task} iteration {self.iteration}"
            )
        self.generation = int(state["generation"])
        self.offspring = {str(k): int(v) for k, v in state["offspring"].items()}
        self.pending = {c["id"]: Component.from_dict(c) for c in state["pending"]}
        self.known = {p["id"]: Path.from_dict(p) for p in state["known"]}
        self.seeds = [self.known[i] for i in state["seeds"]]
        self.population = [self.known[i] for i in state["population"]]
        self.rng.bit_generator.state = state["rng"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    return value
