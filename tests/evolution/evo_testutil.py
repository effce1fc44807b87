"""Small builders for the µ2Net core tests: a tiny shape, a rooted system, a fake trainer
plugged into the real generation loop.

Plain functions (imported by the tests and wrapped as fixtures in ``conftest.py``) so that
Hypothesis tests, which cannot take function-scoped fixtures, can use them too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from mutask.trainer.evolution import (
    ROOT_TASK,
    ChildPlan,
    Component,
    IterationConfig,
    IterationResult,
    Offspring,
    Path,
    Report,
    SearchSpace,
    System,
    TaskIteration,
    ViTShape,
    fresh_plan,
    large_space,
    run_generations,
)
from mutask.trainer.evolution.mutation import MutationContext

SHAPE = ViTShape(hidden=8, depth=3, heads=2, mlp=16, patch=4, image_size=8)
ROOT_CLASSES = 5
MAX_LAYERS = 4


def make_space(
    *,
    adapters: bool = True,
    per_action_mu: bool = False,
    max_layers: int = MAX_LAYERS,
    tune_depth: bool = True,
) -> SearchSpace:
    """The large configuration, shrunk to the tiny shape (one deeper than the root)."""
    return large_space(
        max_layers=max_layers,
        adapters=adapters,
        per_action_mu=per_action_mu,
        tune_depth=tune_depth,
        image_size=SHAPE.image_size,
    )


def depth_of(path: Path) -> int:
    """The number of transformer blocks on ``path``."""
    return sum(1 for n in path.names if n.startswith("encoderblock_"))


def make_system(space: SearchSpace | None = None, shape: ViTShape = SHAPE) -> System:
    """A system holding only a freshly initialised root path (id ``root``)."""
    space = space or make_space()
    plan = fresh_plan("root", ROOT_TASK, shape, space.defaults(), ROOT_CLASSES, shape.depth)
    system = System(shape)
    system.add_components(n.component for n in plan.new)
    system.retain(plan.path)
    return system


def context(
    system: System,
    task: str,
    space: SearchSpace,
    *,
    num_classes: int = 10,
    trainable: Callable[[str], bool] | None = None,
    extra_paths: Iterable[Path] = (),
    extra_components: Iterable[Component] = (),
    adapters: bool = True,
    label_space: str = "",
) -> MutationContext:
    """A mutation context over ``system`` (everything owned is frozen unless told otherwise)."""
    components = {**system.components, **{c.id: c for c in extra_components}}
    known = {p.id: p for p in [*system.iter_paths(), *extra_paths]}
    owners = system.owner_map(exclude=task)
    return MutationContext(
        task=task,
        num_classes=num_classes,
        shape=system.shape,
        space=space,
        components=components,
        is_trainable=trainable or (lambda cid: not owners.get(cid)),
        lookup=known.get,
        adapters=adapters,
        root=system.root,
        label_space=label_space,
    )


class ScriptedRng:
    """A stand-in for ``numpy.random.Generator`` whose draws the test dictates.

    ``random()`` pops the scripted values in order, then returns ``default`` forever;
    ``integers(n)`` pops ``picks`` (else 0); ``permutation(n)`` is the identity.
    """

    def __init__(
        self, draws: Sequence[float] = (), default: float = 0.99, picks: Sequence[int] = ()
    ) -> None:
        self.draws = list(draws)
        self.default = default
        self.picks = list(picks)
        self.calls = 0

    def random(self) -> float:
        self.calls += 1
        return self.draws.pop(0) if self.draws else self.default

    def integers(self, n: int) -> int:
        return self.picks.pop(0) if self.picks else 0

    def permutation(self, n: int) -> np.ndarray:
        return np.arange(n)


def seeded_quality(seed: int, path: Path) -> float:
    """A deterministic pseudo-accuracy in [0, 1) from the seed and the path's content."""
    text = f"{seed}|{path.id}|{sorted(path.hparams.items())}|{path.components}"
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


@dataclass
class FakeTrainer:
    """Stands in for torch: one float per component, copied on clone, changed on training.

    It checks the plan the way the real trainer relies on it: new ids are fresh, sources
    exist, and only the plan's new components are ever written.
    """

    seed: int = 0
    weights: dict[str, float] = field(default_factory=dict)
    seen_ids: set[str] = field(default_factory=set)

    def adopt(self, system: System) -> None:
        for cid in system.components:
            self.weights.setdefault(cid, 0.0)
            self.seen_ids.add(cid)

    def train(self, plan: ChildPlan) -> float:
        for new in plan.new:
            cid = new.component.id
            assert cid not in self.seen_ids, f"component id {cid} reused"
            self.seen_ids.add(cid)
            base = 0.0 if new.source is None else self.weights[new.source]
            self.weights[cid] = base + seeded_quality(self.seed, plan.path)
        return seeded_quality(self.seed, plan.path)

    def drop(self, ids: Iterable[str]) -> None:
        for cid in ids:
            self.weights.pop(cid, None)


Hook = Callable[[TaskIteration, str, object], None]


def run_iteration(
    system: System,
    task: str,
    space: SearchSpace,
    config: IterationConfig,
    rng: np.random.Generator,
    *,
    iteration: int = 0,
    num_classes: int = 10,
    trainer: FakeTrainer | None = None,
    hook: Hook | None = None,
    generations: int | None = None,
    it: TaskIteration | None = None,
) -> tuple[TaskIteration, IterationResult | None]:
    """Drive one task iteration end to end with the engine's generation loop
    (:func:`~mutask.trainer.evolution.run_generations`) and the fake trainer.

    ``hook(it, event, payload)`` sees every step ("plan", "report", "generation", "finish").
    ``generations`` stops after that many generations, before ``finish`` (so a test can
    snapshot mid-iteration); ``it`` continues an existing (e.g. resumed) iteration.
    """
    fake = trainer or FakeTrainer()
    fake.adopt(system)
    if it is None:
        it = TaskIteration(system, task, num_classes, space, config, rng, iteration)
    current = it

    def train(offspring: Offspring) -> list[float | None]:
        for plan in offspring.plans:
            if hook:
                hook(current, "plan", plan)
        return [fake.train(plan) for plan in offspring.plans]

    def report(rep: Report) -> None:
        if hook:
            hook(current, "report", (rep.scored, rep.joined))

    def end(offspring: Offspring, dropped: list[str]) -> None:
        fake.drop(dropped)
        if hook:
            hook(current, "generation", offspring.data_hparams)

    run_generations(it, train, on_report=report, on_generation=end, until=generations)
    if generations is not None or not it.done:
        return it, None
    result = it.finish()
    fake.drop(result.discarded)
    if hook:
        hook(it, "finish", result)
    return it, result


def retain_task(
    system: System,
    task: str,
    *,
    num_classes: int = 10,
    own: Sequence[str] = ("head",),
    label_space: str = "",
) -> Path:
    """Retain a hand-made path for ``task``: the root's components, except ``own`` names,
    which get fresh components ``<task>/<name>`` (a minimal finished task iteration); its
    head's classes mean ``label_space``."""
    root = system.root
    refs: list[tuple[str, str]] = []
    for name, cid in root.components:
        if name in own:
            classes = num_classes if name == "head" else 0
            params = system.shape.component_params(name, num_classes=classes)
            space = label_space if name == "head" else ""
            comp = Component(f"{task}/{name}", name, params, classes, label_space=space)
            system.add_components([comp])
            cid = comp.id
        refs.append((name, cid))
    path = Path(f"{task}/best", task, dict(root.hparams), tuple(refs), parent=root.id)
    system.retain(path)
    return path
