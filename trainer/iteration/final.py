"""The retained path's final training phase, paid for by the rounds successive halving saved.

After the last generation, the best path's own components (those created in this
iteration; nothing any task owns) train on for :class:`~mutask.trainer.evolution.FinalPhase`
rounds, on a fresh warmup + cosine schedule at the path's own hyperparameters, continuing
from its best snapshot and momentum. Best-checkpoint selection still applies: a round is
kept only if it scores at least what the path had; if none does, the path is restored
bit for bit, so the phase can never make the retained path worse on validation.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from mutask.trainer.config import IntroduceConfig
from mutask.trainer.data import Augmenter
from mutask.trainer.evolution import FinalPhase, Path, TaskIteration
from mutask.trainer.evolution.hparams import DATA_PREFIX
from mutask.trainer.iteration.pool import ComponentPool
from mutask.trainer.iteration.progress import Progress
from mutask.trainer.iteration.seeds import derive_seed
from mutask.trainer.iteration.taskdata import DeviceTask
from mutask.trainer.runtime.device import DeviceChoice
from mutask.trainer.training import (
    Batch,
    Candidate,
    CandidateResult,
    Momentum,
    TrainSettings,
    train_candidate,
)


def train_on(
    candidate: Candidate,
    batches: Iterator[Batch],
    validation: Batch,
    settings: TrainSettings,
    *,
    on_step: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[CandidateResult, Momentum]:
    """Train a candidate that already has a score (its ``bar``) further: its best round at
    or above the bar is kept; if no round reaches it, its modules are restored as they were
    (``result.quality`` is None then, and the momentum is the one it came with)."""
    saved = [
        {k: v.detach().clone() for k, v in m.state_dict().items()} for m in candidate.trainable
    ]
    result, momentum = train_candidate(
        candidate, batches, validation, settings, on_step=on_step, should_stop=should_stop
    )
    if result.quality is None:
        with torch.no_grad():
            for module, state in zip(candidate.trainable, saved, strict=True):
                module.load_state_dict(state)
    return result, momentum


@dataclass(frozen=True)
class FinalResult:
    """The path after the phase (rescored if it improved) and the examples it trained on."""

    path: Path
    improved: bool
    examples: int


def train_final(
    it: TaskIteration,
    pool: ComponentPool,
    best: Path,
    phase: FinalPhase,
    cfg: IntroduceConfig,
    data: DeviceTask,
    validation: Batch,
    device: DeviceChoice,
    progress: Progress,
    should_stop: Callable[[], bool] | None = None,
) -> FinalResult:
    """Train ``best``'s own components for ``phase`` (see the module doc)."""
    own = it.own_components(best)
    if not own or best.score is None:
        return FinalResult(best, False, 0)
    modules = [pool.modules[cid] for cid in own]
    ids = best.component_ids
    split = next((i for i, cid in enumerate(ids) if cid in own), len(ids))
    candidate = Candidate(
        model=pool.model(best),
        trainable=modules,
        momentum=[pool.momentum.get(cid, {}) for cid in own],
        hparams=best.hparams,
        score_fn=lambda quality: it.breakdown(best, quality).score,
        bar=best.score,
        prefix=tuple(ids[:split]),
    )
    data_hparams = {k: v for k, v in best.hparams.items() if k.startswith(DATA_PREFIX)}
    stream = data.train.stream(
        cfg.budget.batch_size,
        derive_seed(cfg.seed, cfg.task, it.iteration, "final"),
        Augmenter(data_hparams),
    )
    progress.emit(event="final_phase", rounds=phase.rounds, steps=phase.steps)
    bar = progress.bar(phase.steps, f"{cfg.task} it{it.iteration} final phase")

    def tick(_step: int) -> None:
        bar.update(1)

    try:
        result, momentum = train_on(
            candidate,
            iter(stream),
            validation,
            TrainSettings(phase.rounds, phase.steps_per_round, autocast=device.autocast),
            on_step=tick,
            should_stop=should_stop,
        )
    finally:
        bar.close()
    if result.quality is None:  # no round reached the path's score: it was put back as it was
        progress.log(f"task {cfg.task}: the final phase did not improve {best.id}; kept as is")
        return FinalResult(best, False, result.examples)
    for cid, mom in zip(own, momentum, strict=True):
        pool.momentum[cid] = mom
    refined = it.refine(best, result.quality)
    progress.log(
        f"task {cfg.task}: final phase {best.quality:.4f} -> {result.quality:.4f} "
        f"validation accuracy ({phase.rounds} rounds x {phase.steps_per_round} steps)"
    )
    return FinalResult(refined, True, result.examples)
