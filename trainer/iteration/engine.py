"""The engine: one task iteration end to end (load system, evolve, train, publish, verify).

This is what `mutask introduce` (and so every trainer pod) runs. It only orchestrates, each
step owned elsewhere: the task's lease (:mod:`mutask.trainer.store.lease`), the generation
loop (:mod:`mutask.trainer.evolution.driver`) with the engine's training of each generation
(:mod:`.generation`), checkpoints and resume (:mod:`.resume`), publishing (:mod:`.publish`)
and the no-forgetting check of the other tasks (:mod:`.verify`). A finished generation is
checkpointed, so a killed run resumes at the next one with the same RNG state.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from mutask.contract import ExitCode
from mutask.trainer.config import IntroduceConfig
from mutask.trainer.errors import MutaskError
from mutask.trainer.evolution import (
    IterationConfig,
    Offspring,
    Path,
    System,
    TaskIteration,
    run_generations,
)
from mutask.trainer.iteration.budget import plan as budget_plan
from mutask.trainer.iteration.exchange import Exchange, Worker
from mutask.trainer.iteration.final import train_final
from mutask.trainer.iteration.generation import GenerationTraining, search_space
from mutask.trainer.iteration.pool import ComponentPool
from mutask.trainer.iteration.progress import Progress, ProgressSink
from mutask.trainer.iteration.publish import Publication, publish
from mutask.trainer.iteration.resume import Resume, fingerprint
from mutask.trainer.iteration.seeds import derive_seed
from mutask.trainer.iteration.taskdata import DeviceTask, TaskDataCache
from mutask.trainer.iteration.verify import Verification, verify_task
from mutask.trainer.runtime.device import DeviceChoice
from mutask.trainer.runtime.threads import CpuPolicy
from mutask.trainer.store.lease import Lease, LeaseLost, new_holder_id
from mutask.trainer.store.objects import PreconditionFailed, open_object_store
from mutask.trainer.store.system_store import SystemStore, blob_index, system_from_manifests


class FencedError(MutaskError):
    """Another writer published this task while we were running; our result is stale."""

    exit_code: ClassVar[int] = ExitCode.FENCED

    def __init__(self, message: str) -> None:
        super().__init__(f"fenced: {message}")


@dataclass(frozen=True)
class IntroductionOutcome:
    """What one task iteration produced."""

    task: str
    iteration: int
    best: Path
    manifest: dict[str, Any]
    verifications: list[Verification]
    seconds: float
    candidates_trained: int
    examples: int = 0  # training examples every candidate and the final phase trained on


class Engine:
    """Runs task iterations against one store on one host's devices.

    ``lockstep=False`` trains a generation's candidates one by one (the reference way);
    ``worker`` is this process's place among workers sharing each generation (one per chip;
    ``attempt`` names their start, the same for all of them; see :mod:`.exchange`);
    ``cpu_threads``/``workers``/``cpus`` are the CPU thread choices (see
    :class:`~mutask.trainer.runtime.threads.CpuPolicy`).
    """

    def __init__(
        self,
        store: SystemStore,
        device: DeviceChoice,
        *,
        sinks: Sequence[ProgressSink] = (),
        should_stop: Callable[[], bool] | None = None,
        progress_bars: bool = True,
        log: Callable[[str], None] = print,
        lockstep: bool = True,
        cpu_threads: int | None = None,
        workers: int | None = None,
        cpus: int | None = None,
        worker: Worker | None = None,
        attempt: str = "0",
    ) -> None:
        self.store = store
        self.worker = worker or Worker()
        self.attempt = attempt
        self.device = device
        self.cpu = CpuPolicy(cpu_threads, workers, cpus)
        self.progress = Progress(list(sinks), progress_bars, log)
        self.should_stop = should_stop
        self.lockstep = lockstep
        self.data = TaskDataCache(device.data_device)  # says on stderr when it resizes images
        self._pool: ComponentPool | None = None

    @property
    def log(self) -> Callable[[str], None]:
        return self.progress.log

    def load(self, seed: int = 0) -> tuple[System, dict[str, dict[str, Any]], ComponentPool]:
        """The published system, its manifests, and a pool that reuses live modules."""
        manifests = self.store.manifests()
        system = system_from_manifests(manifests)
        entries = blob_index(manifests)
        pool = self._pool
        if pool is None or pool.shape != system.shape:
            pool = ComponentPool(
                self.store, system.shape, self.device.device, system.components, entries, seed
            )
        else:
            pool.components.update(system.components)
            pool.entries.update(entries)
            pool.seed = seed
        self._pool = pool
        self.cpu.configure(self.device.kind, system.shape.hidden)
        return system, manifests, pool

    def task_data(self, cfg: IntroduceConfig, image_size: int) -> DeviceTask:
        return self.data.get(cfg.task, cfg.dataset, image_size)

    # -- one task iteration ----------------------------------------------------------------
    def introduce(self, cfg: IntroduceConfig, *, verify: bool = True) -> IntroductionOutcome:
        """Introduce (or revisit) ``cfg.task``: evolve, train, publish, verify the others.

        Runs holding the task's lease (fencing): FencedError if another writer holds it, or
        takes it over while this run goes on (then this run stops at its next step).
        """
        lease = Lease(
            open_object_store(self.store.uri),
            cfg.task,
            holder=new_holder_id(cfg.agent_id),
            log=self.log,
        )
        outer = self.should_stop
        try:
            with lease:
                self.should_stop = lambda: lease.check() or bool(outer is not None and outer())
                return self._introduce(cfg, lease, verify=verify)
        except LeaseLost as err:
            raise FencedError(str(err)) from err
        finally:
            self.should_stop = outer

    def follow(self, cfg: IntroduceConfig) -> None:
        """A worker other than the lead (see :mod:`.exchange`): the same evolution as the
        lead, training its share of each generation; it holds no lease and writes nothing
        but its candidates' records."""
        if self.worker.lead:
            raise ValueError("the lead worker introduces; only the others follow")
        self._introduce(cfg, None, verify=False)

    def _introduce(
        self, cfg: IntroduceConfig, lease: Lease | None, *, verify: bool
    ) -> IntroductionOutcome:
        started = time.perf_counter()
        system, _, pool = self.load(cfg.seed)
        read = self.store.read_manifest(cfg.task)
        previous, expected = read if read else (None, 0)
        iteration = int(previous["iteration"]) + 1 if previous else 0
        resume = Resume(self.store, cfg.task, fingerprint(cfg, expected), self.progress)
        exchange = self._exchange(cfg, resume.run)
        landed = resume.landed(previous)
        if landed is not None:  # a killed run's manifest landed: finish its checks, no retrain
            checks = self.verify(exclude=(cfg.task,)) if verify else []
            if exchange is not None:  # the other workers saw it too (then it is cleared)
                exchange.done()
            if lease is not None:  # the lead clears; a follower never writes the state
                resume.clear()
            return IntroductionOutcome(
                cfg.task,
                int(landed["iteration"]),
                Path.from_dict(landed["path"]),
                dict(landed),
                checks,
                time.perf_counter() - started,
                0,
            )
        if exchange is not None and lease is not None:
            exchange.clear_other_runs()
        data = self.task_data(cfg, system.shape.image_size)
        budget = budget_plan(cfg.budget, len(data.train))
        self.log(f"task {cfg.task}: {budget.describe()}")
        it = TaskIteration(
            system,
            cfg.task,
            data.num_classes,
            search_space(cfg, system.shape),
            IterationConfig(
                generations=cfg.budget.generations,
                candidates=cfg.budget.candidates,
                size_scale=cfg.search.size_scale,
                flops_scale=cfg.search.flops_scale,
                population_cap=cfg.search.population_cap,
                adapters=cfg.search.adapters,
            ),
            np.random.default_rng(derive_seed(cfg.seed, cfg.task, iteration)),
            iteration,
            label_space=data.label_space,
        )
        resume.restore(it, pool)
        restored = it.generation  # generations a killed run already trained
        workers = (
            self.cpu.candidate_workers(self.device.kind, cfg.budget.candidates)
            if self.lockstep
            else 1
        )
        training = GenerationTraining(
            cfg,
            it,
            pool,
            data,
            self.device,
            self.progress,
            budget.steps_per_round,
            workers=workers,
            lockstep=self.lockstep,
            should_stop=self.should_stop,
            exchange=exchange,
        )

        def end_generation(_offspring: Offspring, dropped: list[str]) -> None:
            training.end()
            pool.drop(dropped)
            if lease is not None:
                lease.confirm()  # a fenced-off writer must not overwrite the new holder's state
                resume.save(it, pool)

        run_generations(it, training.train, on_report=training.report, on_generation=end_generation)
        if exchange is not None:
            exchange.done()
        if lease is None:  # a follower: the lead trains the final phase and publishes
            return IntroductionOutcome(cfg.task, iteration, it.finish().best, {}, [], 0.0, 0)
        examples = training.examples + restored * budget.search_examples // cfg.budget.generations
        best_now = it.best
        searched = best_now.quality if best_now is not None else None
        final_examples = 0
        if budget.final is not None and best_now is not None:
            final = train_final(
                it,
                pool,
                best_now,
                budget.final,
                cfg,
                data,
                training.validation,
                self.device,
                self.progress,
                self.should_stop,
            )
            final_examples = final.examples
        examples += final_examples
        result = it.finish()
        pool.freeze(result.created)
        pool.drop(result.discarded)
        best = result.best
        assert best.quality is not None
        t0 = time.perf_counter()
        try:
            manifest, generation = publish(
                self.store,
                system,
                pool,
                cfg,
                self.device,
                Publication(
                    task=cfg.task,
                    iteration=iteration,
                    created=result.created,
                    breakdown=it.breakdown(best, best.quality),
                    num_classes=data.num_classes,
                    dataset=cfg.dataset,
                    test=data.test,
                    known=it.known,
                    previous=previous,
                    started=started,
                    extra={
                        "run": resume.run,  # a restarted run sees this one landed
                        "training": {
                            "examples": examples,
                            "seconds": round(time.perf_counter() - started, 1),
                            "steps_per_round": budget.steps_per_round,
                            "search_quality": searched,  # the best's, before the final phase
                            "final_examples": final_examples,
                            "budget": asdict(cfg.budget),
                        },
                    },
                ),
                expected=expected,
                lease=lease,
            )
        except PreconditionFailed as err:
            raise FencedError(
                f"task {cfg.task}: another writer published it while this run was going "
                f"(manifest changed under us); this run's result is discarded: {err}"
            ) from err
        self._published(manifest, system, generation, best, time.perf_counter() - t0)
        self.progress.emit(
            event="trained",
            examples_trained=examples,
            training_seconds=manifest["training"]["seconds"],
        )
        verifications = self.verify(exclude=(cfg.task,)) if verify else []
        resume.clear()  # only now: a retry after a kill above finishes the checks (landed)
        ok = all(v.ok for v in verifications)
        self.progress.emit(
            event="verified", no_forgetting_verified=ok, tasks_checked=len(verifications)
        )
        return IntroductionOutcome(
            cfg.task,
            iteration,
            best,
            manifest,
            verifications,
            time.perf_counter() - started,
            training.trained,
            examples,
        )

    def _exchange(self, cfg: IntroduceConfig, run: str) -> Exchange | None:
        """This worker's exchange with the others sharing each generation (None: alone)."""
        if self.worker.count == 1:
            return None
        return Exchange(
            self.store, cfg.task, run, self.attempt, self.worker, should_stop=self.should_stop
        )

    def _published(
        self, manifest: Mapping[str, Any], system: System, generation: int, best: Path, s: float
    ) -> None:
        self.progress.emit(
            event="published",
            checkpoint_uri=f"{self.store.uri}/tasks/{manifest['task']}/manifest.json#{generation}",
            test_accuracy=manifest["test_accuracy"],
            params_added=manifest["params"]["added"],
            accounted_params=manifest["score"]["accounted_params"],
            penalty=manifest["score"]["penalty"],
            best_score=best.score,
            best_accuracy=best.quality,
            checkpoint_seconds=s,
            system_params=sum(c.num_params for c in system.components.values()),
            component_count=len(system.components),
        )

    # -- verification --------------------------------------------------------------------------
    def verify(
        self, tasks: Sequence[str] | None = None, exclude: Sequence[str] = ()
    ) -> list[Verification]:
        """Re-check published tasks against their manifests (see :mod:`.verify`)."""
        _, manifests, pool = self.load()
        names = [t for t in (tasks or sorted(manifests)) if t not in exclude]
        return [verify_task(manifests[t], pool, self.data, self.device) for t in names]
