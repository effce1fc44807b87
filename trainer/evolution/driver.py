"""The generation loop of one task iteration: propose K children, have them trained, report.

This is the loop the engine runs and the property tests check. Training is a callback,
``train(offspring) -> qualities``: it gets a generation's children (and the data hparams
they share) and returns each child's best validation quality that reached its bar, or None
if none did. How they are trained (in lockstep, one per device, successive halving, on
other hosts) is the callback's business; what happens with the result (keep or drop a
child's modules, checkpoint a finished generation) is the caller's, through ``on_report``
and ``on_generation``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from mutask.trainer.evolution.hparams import HValue
from mutask.trainer.evolution.iteration import TaskIteration
from mutask.trainer.evolution.mutation import ChildPlan
from mutask.trainer.evolution.system import Path


@dataclass(frozen=True)
class Offspring:
    """One generation's children, proposed from the population as it stood at its start."""

    generation: int
    data_hparams: Mapping[str, HValue]
    plans: tuple[ChildPlan, ...]


@dataclass(frozen=True)
class Report:
    """What became of one trained child: its quality (None: never reached its bar), its
    scored path (None then too), and whether it joined the population."""

    candidate: int
    plan: ChildPlan
    quality: float | None
    scored: Path | None
    joined: bool


Train = Callable[[Offspring], Sequence[float | None]]


def run_generation(
    it: TaskIteration,
    train: Train,
    *,
    on_report: Callable[[Report], None] | None = None,
    on_generation: Callable[[Offspring, list[str]], None] | None = None,
) -> list[Report]:
    """One generation: K children proposed, trained by ``train``, reported back in order
    (``on_report`` after each), then the generation ended (``on_generation`` with the
    pending component ids it dropped)."""
    data = it.data_hparams()
    offspring = Offspring(
        it.generation, data, tuple(it.propose(k, data) for k in range(it.config.candidates))
    )
    qualities = list(train(offspring))
    if len(qualities) != len(offspring.plans):
        raise ValueError(f"train returned {len(qualities)} qualities for {len(offspring.plans)}")
    reports: list[Report] = []
    for k, (plan, quality) in enumerate(zip(offspring.plans, qualities, strict=True)):
        scored, joined = it.report(plan.path, quality) if quality is not None else (None, False)
        reports.append(Report(k, plan, quality, scored, joined))
        if on_report is not None:
            on_report(reports[-1])
    dropped = it.end_generation()
    if on_generation is not None:
        on_generation(offspring, dropped)
    return reports


def run_generations(
    it: TaskIteration,
    train: Train,
    *,
    on_report: Callable[[Report], None] | None = None,
    on_generation: Callable[[Offspring, list[str]], None] | None = None,
    until: int | None = None,
) -> None:
    """Generations until the iteration is done (or ``until`` generations have run); the
    caller then retains the best with ``it.finish()``."""
    while not it.done and (until is None or it.generation < until):
        run_generation(it, train, on_report=on_report, on_generation=on_generation)
