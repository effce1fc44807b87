"""The engine's side of each generation: children become candidates in the pool, train on
this host's devices, and are kept (momentum inherited) or dropped.

:class:`GenerationTraining` is the ``train`` callback of the generation loop
(:func:`~mutask.trainer.evolution.run_generations`) plus its ``on_report``: all candidates
of a generation consume the same seeded batch stream, train in lockstep (one per core on a
CPU) or one per device, and report their best validation quality at or above their bar.
With an :class:`~mutask.trainer.iteration.exchange.Exchange` (one worker per chip), this
worker trains only its share and merges every worker's results in candidate order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Never

from tqdm.auto import tqdm

from mutask.trainer.config import IntroduceConfig
from mutask.trainer.data import Augmenter
from mutask.trainer.evolution import (
    Offspring,
    Path,
    Report,
    SearchSpace,
    TaskIteration,
    ViTShape,
    large_space,
)
from mutask.trainer.iteration.exchange import Exchange
from mutask.trainer.iteration.pool import ComponentPool, pool_candidate
from mutask.trainer.iteration.progress import Progress
from mutask.trainer.iteration.seeds import derive_seed
from mutask.trainer.iteration.taskdata import DeviceTask
from mutask.trainer.runtime.device import DeviceChoice
from mutask.trainer.training import (
    Batch,
    CandidateResult,
    Momentum,
    TrainSettings,
    train_generation,
    train_placed,
)


def search_space(cfg: IntroduceConfig, shape: ViTShape) -> SearchSpace:
    """The µ2Net search space of ``cfg`` for a system of ``shape``."""
    return large_space(
        max_layers=shape.depth,
        adapters=cfg.search.adapters,
        per_action_mu=cfg.search.per_action_mu,
        tune_depth=cfg.search.tune_depth,
        image_size=shape.image_size,
    )


def train_settings(cfg: IntroduceConfig, device: DeviceChoice) -> TrainSettings:
    """Each candidate's training budget and precision."""
    return TrainSettings(
        rounds=cfg.budget.validation_rounds,
        steps_per_round=cfg.budget.steps_per_round,
        autocast=device.autocast,
    )


class GenerationTraining:
    """Trains each generation of one task iteration (see the module doc)."""

    def __init__(
        self,
        cfg: IntroduceConfig,
        it: TaskIteration,
        pool: ComponentPool,
        data: DeviceTask,
        device: DeviceChoice,
        progress: Progress,
        *,
        workers: int = 1,
        lockstep: bool = True,
        should_stop: Callable[[], bool] | None = None,
        exchange: Exchange | None = None,
    ) -> None:
        self.cfg = cfg
        self.it = it
        self.pool = pool
        self.data = data
        limit = cfg.budget.max_validation_examples
        self.validation = data.validation.tensors(limit)
        self.device = device
        self.settings = train_settings(cfg, device)
        self.progress = progress
        self.workers = workers
        self.lockstep = lockstep
        self.should_stop = should_stop
        self.exchange = exchange
        self.results: list[tuple[CandidateResult, Momentum]] = []
        self.bar: tqdm[Never] | None = None
        self.trained = 0

    def train(self, offspring: Offspring) -> list[float | None]:
        """Train a generation's children; each one's best quality at or above its bar."""
        cfg, it, pool = self.cfg, self.it, self.pool
        budget = cfg.budget
        gen = offspring.generation
        self.progress.emit(event="generation", generation=gen, generations=budget.generations)
        steps = self.settings.rounds * self.settings.steps_per_round
        plans = list(offspring.plans)
        ks = list(range(len(plans)))  # the candidates trained here: all, or this worker's share
        if self.exchange is not None:
            done = self.exchange.stored(gen, plans)
            share = self.exchange.worker.share(len(plans))
            ks = [k for k in share if k not in done]
            if len(ks) < len(share):  # only an earlier attempt can have stored our share
                w = self.exchange.worker
                reused = [k for k in share if k in done]
                self.progress.log(
                    f"task {cfg.task}: generation {gen + 1}: worker {w.rank + 1}/{w.count} "
                    f"reuses candidates {reused} an earlier attempt stored, trains {ks or 'none'}"
                )
        self.bar = bar = self.progress.bar(
            len(ks) * steps,
            f"{cfg.task} it{it.iteration} gen {gen + 1}/{budget.generations}",
        )
        augmenter = Augmenter(offspring.data_hparams)
        stream_seed = derive_seed(cfg.seed, cfg.task, it.iteration, gen)

        def batches() -> Iterator[Batch]:
            return self.data.train.stream(budget.batch_size, stream_seed, augmenter)

        def tick(_step: int) -> None:
            bar.update(1)

        devices = self.device.devices
        n = len(devices)
        try:
            candidates = [  # materialised in candidate order; the i-th on devices[i % n]
                pool_candidate(
                    pool, plan, _score_fn(it, plan.path), it.bar(plan.path), i % n, devices[i % n]
                )
                for i, plan in enumerate(plans[k] for k in ks)
            ]
            if n > 1:
                self.results = train_placed(
                    candidates,
                    devices,
                    batches,
                    self.validation,
                    self.settings,
                    lockstep=self.lockstep,
                    on_step=tick,
                    should_stop=self.should_stop,
                )
                for k in ks:
                    for cid in plans[k].trainable_ids:
                        pool.to_home(cid)
            else:
                self.results = train_generation(
                    candidates,
                    batches,
                    self.validation,
                    self.settings,
                    lockstep=self.lockstep,
                    workers=self.workers,
                    on_step=tick,
                    should_stop=self.should_stop,
                )
            if self.exchange is not None:  # share: store ours, gather all, merge in order
                for k, (result, momentum) in zip(ks, self.results, strict=True):
                    self.exchange.put(gen, k, plans[k], result, momentum, pool)
                records = self.exchange.gather(gen, plans)
                self.results = self.exchange.merge(
                    records, plans, pool, dict(zip(ks, self.results, strict=True))
                )
        except BaseException:
            bar.close()
            raise
        self.trained += len(ks)
        return [result.quality for result, _ in self.results]

    def report(self, report: Report) -> None:
        """Keep a child that joined the population (with its momentum), drop the others."""
        result, momentum = self.results[report.candidate]
        plan = report.plan
        if report.joined:
            for cid, mom in zip(plan.trainable_ids, momentum, strict=True):
                self.pool.momentum[cid] = mom
        else:
            self.pool.drop(plan.trainable_ids)
        best = self.it.best
        budget = self.cfg.budget
        if self.bar is not None:
            self.bar.set_postfix(
                best=f"{best.score:.4f}" if best and best.score else "-",
                last=f"{result.quality or 0:.3f}",
            )
        self.progress.emit(
            event="candidate",
            generation=self.it.generation,
            candidate=report.candidate,
            candidates_trained=self.it.generation * budget.candidates + report.candidate + 1,
            candidates_total=budget.generations * budget.candidates,
            best_score=best.score if best else None,
            best_accuracy=best.quality if best else None,
            examples_per_second=result.examples_per_second,
            step_seconds=result.train_seconds / max(1, result.steps),
        )

    def end(self) -> None:
        """The generation is over: close its progress bar."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _score_fn(it: TaskIteration, path: Path) -> Callable[[float], float]:
    """The score a validation quality gives ``path`` in this iteration."""
    return lambda quality: it.breakdown(path, quality).score
