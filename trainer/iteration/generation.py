"""The engine's side of each generation: children become candidates in the pool, train on
this host's devices, and are kept (momentum inherited) or dropped.

:class:`GenerationTraining` is the ``train`` callback of the generation loop
(:func:`~mutask.trainer.evolution.run_generations`) plus its ``on_report``: all candidates
of a generation consume the same seeded batch stream, train in lockstep (one per core on a
CPU) or one per device, round by round, and report their best validation quality at or
above their bar. With ``budget.halving`` only the better half goes on after each round
(successive halving, decided by :mod:`mutask.trainer.evolution.halving`); the rounds it
saves pay for the retained path's final phase (:mod:`.final`). With an
:class:`~mutask.trainer.iteration.exchange.Exchange` (one worker per chip or host), this worker
trains only its share, the round qualities that decide the halving are shared through the
store, and every worker merges all results in candidate order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Never

from tqdm.auto import tqdm

from mutask.trainer.config import IntroduceConfig
from mutask.trainer.data import Augmenter
from mutask.trainer.evolution import (
    ChildPlan,
    Halving,
    HValue,
    Offspring,
    Path,
    Report,
    SearchSpace,
    TaskIteration,
    ViTShape,
    large_space,
    survivors,
)
from mutask.trainer.iteration.exchange import Exchange, training_cost
from mutask.trainer.iteration.pool import ComponentPool, pool_candidate
from mutask.trainer.iteration.progress import Progress
from mutask.trainer.iteration.seeds import derive_seed
from mutask.trainer.iteration.taskdata import DeviceTask
from mutask.trainer.runtime.device import DeviceChoice
from mutask.trainer.training import (
    Batch,
    Candidate,
    CandidateResult,
    Interrupted,
    Lockstep,
    Momentum,
    OneByOne,
    Placed,
    TrainSettings,
)
from mutask.trainer.training.lockstep import GenerationTrainer

# Where a system's own search differs from the spec's (ViT-L at 384 px): measured on
# mu-tiny at 28 px (docs/benchmarks.md, "Levers"). Random crops down to 5 % of the area and
# left-right flips cost 5 points on a Fashion-MNIST task (a 6x6 crop of a 28x28 image is
# noise), so small images are neither cropped nor flipped (taken out of the search: with
# short rounds, a child that turned them on could still win a generation by noise); SGD at
# 0.01 trails 0.03-0.1 for these small ViTs, so opt_lr starts at 0.05 (still tuned).
SMALL_IMAGE = 64  # px: at or below, no crops or flips
SMALL_MODEL = 256  # hidden size: at or below, opt_lr starts at 0.05
SMALL_IMAGE_DEFAULTS: dict[str, HValue] = {"ds_crop": False, "ds_flip_left_right": False}
SMALL_MODEL_DEFAULTS: dict[str, HValue] = {"opt_lr": 0.05}


def search_space(cfg: IntroduceConfig, shape: ViTShape) -> SearchSpace:
    """The µ2Net search space of ``cfg`` for a system of ``shape``: the spec's ladders,
    with defaults that suit small images and small models (see above)."""
    defaults: dict[str, HValue] = {}
    fixed = SMALL_IMAGE_DEFAULTS if shape.image_size <= SMALL_IMAGE else {}
    if shape.hidden <= SMALL_MODEL:
        defaults.update(SMALL_MODEL_DEFAULTS)
    return large_space(
        max_layers=shape.depth,
        adapters=cfg.search.adapters,
        per_action_mu=cfg.search.per_action_mu,
        tune_depth=cfg.search.tune_depth,
        image_size=shape.image_size,
        defaults=defaults,
        fixed=fixed,
    )


def train_settings(
    cfg: IntroduceConfig, device: DeviceChoice, steps_per_round: int
) -> TrainSettings:
    """Each candidate's training budget (``steps_per_round``: see :mod:`.budget`) and
    precision."""
    return TrainSettings(
        rounds=cfg.budget.validation_rounds,
        steps_per_round=steps_per_round,
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
        steps_per_round: int,
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
        self.settings = train_settings(cfg, device, steps_per_round)
        self.progress = progress
        self.workers = workers
        self.lockstep = lockstep
        self.should_stop = should_stop
        self.exchange = exchange
        self.results: list[tuple[CandidateResult, Momentum]] = []
        self.bar: tqdm[Never] | None = None
        self.trained = 0
        self.examples = 0

    def train(self, offspring: Offspring) -> list[float | None]:
        """Train a generation's children; each one's best quality at or above its bar."""
        cfg, it, pool = self.cfg, self.it, self.pool
        budget = cfg.budget
        gen = offspring.generation
        self.progress.emit(event="generation", generation=gen, generations=budget.generations)
        plans = list(offspring.plans)
        halving = Halving(len(plans), self.settings.rounds, budget.halving)
        ks = list(range(len(plans)))  # the candidates trained here: all, or this worker's share
        if self.exchange is not None:
            done = self.exchange.stored(gen, plans)
            share = self.exchange.worker.share(len(plans), [training_cost(p) for p in plans])
            ks = [k for k in share if k not in done]
            if len(ks) < len(share):  # only an earlier attempt can have stored our share
                w = self.exchange.worker
                reused = [k for k in share if k in done]
                self.progress.log(
                    f"task {cfg.task}: generation {gen + 1}: worker {w.rank + 1}/{w.count} "
                    f"reuses candidates {reused} an earlier attempt stored, trains {ks or 'none'}"
                )
        self.bar = bar = self.progress.bar(
            halving.candidate_rounds * self.settings.steps_per_round * len(ks) // len(plans),
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
            score_fns = [_score_fn(it, plan.path) for plan in plans]
            candidates = [  # in candidate order; the i-th trained here on devices[i % n]
                pool_candidate(
                    pool, plans[k], score_fns[k], it.bar(plans[k].path), i % n, devices[i % n]
                )
                for i, k in enumerate(ks)
            ]
            if self.should_stop is not None and self.should_stop():
                raise Interrupted("stop requested before training")
            results = self._train_rounds(
                gen, plans, ks, halving, score_fns, candidates, batches, tick
            )
            if n > 1:
                for k in ks:
                    for cid in plans[k].trainable_ids:
                        pool.to_home(cid)
            self.results = results
            if self.exchange is not None:  # share: store ours, gather all, merge in order
                for k, (result, momentum) in zip(ks, results, strict=True):
                    self.exchange.put(gen, k, plans[k], result, momentum, pool)
                records = self.exchange.gather(gen, plans)
                self.results = self.exchange.merge(
                    records, plans, pool, dict(zip(ks, results, strict=True))
                )
        except BaseException:
            bar.close()
            raise
        self.trained += len(ks)
        self.examples += sum(result.examples for result, _ in self.results)
        return [result.quality for result, _ in self.results]

    def _train_rounds(
        self,
        gen: int,
        plans: list[ChildPlan],
        ks: list[int],
        halving: Halving,
        score_fns: list[Callable[[float], float]],
        candidates: list[Candidate],
        batches: Callable[[], Iterator[Batch]],
        tick: Callable[[int], None],
    ) -> list[tuple[CandidateResult, Momentum]]:
        """Train the candidates ``ks`` (``candidates``, in that order) round by round; after
        each round only the better part of the whole generation goes on (successive halving;
        with an exchange, every worker decides from every candidate's round quality)."""
        if not ks:  # an earlier attempt stored this worker's whole share
            return []
        here = {k: i for i, k in enumerate(ks)}
        best: list[float | None] = [None] * len(plans)
        active = list(range(len(plans)))
        with self._trainer(candidates, batches, tick) as trainer:
            for r in range(halving.rounds):
                mine = [k for k in active if k in here]
                qualities = trainer.train_round([here[k] for k in mine]) if mine else []
                if r + 1 == halving.rounds:
                    break  # no decision follows the last round
                round_qualities = dict(zip(mine, qualities, strict=True))
                if self.exchange is not None:
                    round_qualities = self.exchange.share_round(
                        gen, r, plans, round_qualities, active
                    )
                for k in active:
                    score, previous = score_fns[k](round_qualities[k]), best[k]
                    best[k] = score if previous is None else max(previous, score)
                active = survivors(best, active, halving.active(r + 1))
            return trainer.finish()

    def _trainer(
        self,
        candidates: list[Candidate],
        batches: Callable[[], Iterator[Batch]],
        tick: Callable[[int], None],
    ) -> GenerationTrainer:
        """A generation trainer for this host: one per device, lockstep, or one by one."""
        devices = self.device.devices
        if len(devices) > 1:
            return Placed(
                candidates,
                devices,
                batches,
                self.validation,
                self.settings,
                lockstep=self.lockstep,
                on_step=tick,
                should_stop=self.should_stop,
            )
        if self.lockstep:
            return Lockstep(
                candidates,
                batches(),
                self.validation,
                self.settings,
                workers=self.workers,
                on_step=tick,
                should_stop=self.should_stop,
            )
        return OneByOne(
            candidates,
            batches,
            self.validation,
            self.settings,
            on_step=tick,
            should_stop=self.should_stop,
        )

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
            examples_trained=self.examples,
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
