"""The engine: one task iteration end to end (load system, evolve, train, publish, verify).

This is what `mutask introduce` (and so every trainer pod) runs. It joins the pure µ2Net core
(:mod:`mutask.trainer.evolution`) to torch (pool, training), data and storage. A finished
generation is checkpointed, so a killed run resumes at the next one with the same RNG state.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from mutask.trainer.config import IntroduceConfig
from mutask.trainer.data import Augmenter, BatchStream
from mutask.trainer.evolution import (
    IterationConfig,
    IterationResult,
    Path,
    System,
    TaskIteration,
    ViTShape,
    large_space,
)
from mutask.trainer.evolution.hparams import SearchSpace
from mutask.trainer.forgetting import Verification, probe_sha256, verify_task
from mutask.trainer.manifest import build_manifest
from mutask.trainer.pool import ComponentPool, pool_candidate
from mutask.trainer.runtime.device import (
    DeviceChoice,
    auto_candidate_workers,
    auto_cpu_threads,
    available_cpus,
)
from mutask.trainer.store.lease import Lease, LeaseLost, new_holder_id
from mutask.trainer.store.objects import PreconditionFailed, open_object_store
from mutask.trainer.store.system_store import SystemStore, blob_index, system_from_manifests
from mutask.trainer.taskdata import DeviceTask, TaskDataCache
from mutask.trainer.training import (
    Batch,
    TrainSettings,
    evaluate,
    train_generation,
    train_placed,
)

ProgressSink = Callable[[Mapping[str, object]], None]


class FencedError(RuntimeError):
    """Another writer published this task while we were running; our result is stale."""


def derive_seed(*parts: int | str) -> int:
    """A stable 63-bit seed from ints and strings (no Python hash randomisation)."""
    words = [p if isinstance(p, int) else zlib.crc32(p.encode()) for p in parts]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0] >> 1)


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


class Engine:
    """Runs task iterations against one store on one device."""

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
    ) -> None:
        """``cpu_threads``: None = auto (see auto_cpu_threads), 0 = leave torch's setting.
        ``workers``: threads training a generation's candidates at once (lockstep on one
        device); None = auto (see auto_candidate_workers). Results do not depend on it.
        ``cpus``: at most this many CPUs for the auto choices (e.g. the pod's request);
        None = every available one."""
        if workers is not None and workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.store = store
        self.cpu_threads = cpu_threads
        self.workers = workers
        self.cpus = cpus
        self.lockstep = lockstep  # False: train candidates one by one (the reference way)
        self.device = device
        self.sinks = list(sinks)
        self.should_stop = should_stop
        self.progress_bars = progress_bars
        self.log = log
        self.data = TaskDataCache(device.device)
        self._pool: ComponentPool | None = None

    # -- plumbing ------------------------------------------------------------------------
    def emit(self, **progress: object) -> None:
        for sink in self.sinks:
            sink(progress)

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
        self.configure_threads(system.shape)
        return system, manifests, pool

    def configure_threads(self, shape: ViTShape) -> None:
        """Set torch's CPU intra-op threads for this model size (unless told not to)."""
        if self.device.kind == "cpu" and self.cpu_threads != 0:
            torch.set_num_threads(
                self.cpu_threads or auto_cpu_threads(shape.hidden, self.usable_cpus())
            )

    def candidate_workers(self, candidates: int) -> int:
        """How many of a generation's ``candidates`` train at once on this engine's device
        (threads on a CPU; accelerators train one candidate each, see placement.py)."""
        if not self.lockstep or self.device.kind != "cpu":
            return 1
        if self.workers is not None:
            return min(self.workers, max(1, candidates))
        return auto_candidate_workers(
            self.device.kind, torch.get_num_threads(), candidates, self.usable_cpus()
        )

    def usable_cpus(self) -> int:
        """CPUs for the automatic thread and worker counts: available, capped by ``cpus``."""
        available = available_cpus()
        return min(available, self.cpus) if self.cpus else available

    def task_data(self, cfg: IntroduceConfig, image_size: int) -> DeviceTask:
        return self.data.get(cfg.task, cfg.dataset, image_size)

    def settings(self, cfg: IntroduceConfig) -> TrainSettings:
        return TrainSettings(
            rounds=cfg.budget.validation_rounds,
            steps_per_round=cfg.budget.steps_per_round,
            autocast=self.device.autocast,
        )

    @staticmethod
    def space(cfg: IntroduceConfig, system: System) -> SearchSpace:
        return large_space(
            max_layers=system.shape.depth,
            adapters=cfg.search.adapters,
            per_action_mu=cfg.search.per_action_mu,
            image_size=system.shape.image_size,
        )

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

    def _introduce(
        self, cfg: IntroduceConfig, lease: Lease, *, verify: bool
    ) -> IntroductionOutcome:
        started = time.perf_counter()
        system, manifests, pool = self.load(cfg.seed)
        previous = self.store.read_manifest(cfg.task)
        expected = previous[1] if previous else 0
        iteration = int(previous[0]["iteration"]) + 1 if previous else 0
        landed = self._already_published(cfg, previous, verify=verify, started=started)
        if landed is not None:
            return landed
        data = self.task_data(cfg, system.shape.image_size)
        val = (
            data.validation[0][: cfg.budget.max_validation_examples],
            data.validation[1][: cfg.budget.max_validation_examples],
        )
        rng = np.random.default_rng(derive_seed(cfg.seed, cfg.task, iteration))
        it = TaskIteration(
            system,
            cfg.task,
            data.num_classes,
            self.space(cfg, system),
            IterationConfig(
                generations=cfg.budget.generations,
                candidates=cfg.budget.candidates,
                size_scale=cfg.search.size_scale,
                flops_scale=cfg.search.flops_scale,
                population_cap=cfg.search.population_cap,
                adapters=cfg.search.adapters,
            ),
            rng,
            iteration,
        )
        self._resume(cfg, it, pool, fingerprint=_fingerprint(cfg, expected))
        settings = self.settings(cfg)
        trained = 0
        while not it.done:
            trained += self._generation(cfg, it, pool, data, val, settings)
            for cid in it.end_generation():
                pool.drop([cid])
            lease.confirm()  # a fenced-off writer must not overwrite the new holder's state
            self._checkpoint(cfg, it, pool, _fingerprint(cfg, expected))
        result = it.finish()
        pool.freeze(result.created)
        pool.drop(result.discarded)
        manifest = self._publish(
            cfg,
            system,
            it,
            result,
            pool,
            data,
            manifests,
            expected,
            previous[0] if previous else None,
            started,
            lease=lease,
        )
        verifications = self.verify(exclude=(cfg.task,)) if verify else []
        ok = all(v.ok for v in verifications)
        self.emit(event="verified", no_forgetting_verified=ok, tasks_checked=len(verifications))
        return IntroductionOutcome(
            cfg.task,
            iteration,
            result.best,
            manifest,
            verifications,
            time.perf_counter() - started,
            trained,
        )

    def _generation(
        self,
        cfg: IntroduceConfig,
        it: TaskIteration,
        pool: ComponentPool,
        data: DeviceTask,
        val: tuple[torch.Tensor, torch.Tensor],
        settings: TrainSettings,
    ) -> int:
        gen = it.generation
        data_hp = it.data_hparams()
        augmenter = Augmenter(data_hp)
        stream_seed = derive_seed(cfg.seed, cfg.task, it.iteration, gen)
        steps = settings.rounds * settings.steps_per_round
        self.emit(event="generation", generation=gen, generations=cfg.budget.generations)
        bar = tqdm(
            total=cfg.budget.candidates * steps,
            unit="step",
            leave=True,
            desc=f"{cfg.task} it{it.iteration} gen {gen + 1}/{cfg.budget.generations}",
            disable=not self.progress_bars,
            dynamic_ncols=True,
        )
        with bar:
            # As in the reference, all K children of a generation are proposed from the
            # population as it stands at the generation's start, then trained.
            plans = [it.propose(k, data_hp) for k in range(cfg.budget.candidates)]

            def tick(_step: int) -> None:
                bar.update(1)

            def batches() -> Iterator[Batch]:
                return iter(
                    BatchStream(
                        data.train[0], data.train[1], cfg.budget.batch_size, stream_seed, augmenter
                    )
                )

            devices = self.device.devices
            n = len(devices)
            candidates = [  # materialised in candidate order; k on devices[k % n]
                pool_candidate(
                    pool, plan, _score_fn(it, plan.path), it.bar(plan.path), k % n, devices[k % n]
                )
                for k, plan in enumerate(plans)
            ]
            if n > 1:  # one candidate per device (k -> k % n)
                trained = train_placed(
                    candidates,
                    devices,
                    batches,
                    val,
                    settings,
                    lockstep=self.lockstep,
                    on_step=tick,
                    should_stop=self.should_stop,
                )
                for plan in plans:
                    for cid in plan.trainable_ids:
                        pool.to_home(cid)
            else:
                trained = train_generation(
                    candidates,
                    batches,
                    val,
                    settings,
                    lockstep=self.lockstep,
                    on_step=tick,
                    should_stop=self.should_stop,
                    workers=self.candidate_workers(len(candidates)),
                )
            for k, (plan, (result, momentum)) in enumerate(zip(plans, trained, strict=True)):
                joined = False
                if result.quality is not None:
                    _, joined = it.report(plan.path, result.quality)
                if joined:
                    for cid, mom in zip(plan.trainable_ids, momentum, strict=True):
                        pool.momentum[cid] = mom
                else:
                    pool.drop(plan.trainable_ids)
                best = it.best
                bar.set_postfix(
                    best=f"{best.score:.4f}" if best and best.score else "-",
                    last=f"{result.quality or 0:.3f}",
                )
                self.emit(
                    event="candidate",
                    generation=gen,
                    candidate=k,
                    candidates_trained=gen * cfg.budget.candidates + k + 1,
                    candidates_total=cfg.budget.generations * cfg.budget.candidates,
                    best_score=best.score if best else None,
                    best_accuracy=best.quality if best else None,
                    examples_per_second=result.examples_per_second,
                    step_seconds=result.train_seconds / max(1, result.steps),
                )
        return cfg.budget.candidates

    # -- resume ------------------------------------------------------------------------------
    def _checkpoint(
        self, cfg: IntroduceConfig, it: TaskIteration, pool: ComponentPool, fingerprint: str
    ) -> None:
        t0 = time.perf_counter()
        blobs = {cid: pool.save(cid)["blob"] for cid in sorted(it.pending)}
        self.store.save_resume(
            cfg.task, {"fingerprint": fingerprint, "state": it.state_dict(), "blobs": blobs}
        )
        self.emit(
            event="checkpoint",
            checkpoint_seconds=time.perf_counter() - t0,
            generation=it.generation,
        )

    def _resume(
        self, cfg: IntroduceConfig, it: TaskIteration, pool: ComponentPool, fingerprint: str
    ) -> None:
        saved = self.store.load_resume(cfg.task)
        if saved is None:
            return
        if saved.get("fingerprint") != fingerprint:
            self.log(f"task {cfg.task}: ignoring a resume state from another run/config")
            return
        it.load_state_dict(saved["state"])
        for cid, blob in saved["blobs"].items():
            pool.load(it.pending[cid], blob, frozen=False)
        self.log(f"task {cfg.task}: resumed at generation {it.generation}")

    def _already_published(
        self,
        cfg: IntroduceConfig,
        previous: tuple[dict[str, Any], int] | None,
        *,
        verify: bool,
        started: float,
    ) -> IntroductionOutcome | None:
        """The outcome of a killed run whose manifest landed before it cleared its resume."""
        saved = self.store.load_resume(cfg.task)
        if previous is None or saved is None:
            return None
        manifest = previous[0]
        if manifest.get("run") is None or manifest.get("run") != saved.get("fingerprint"):
            return None
        self.store.clear_resume(cfg.task)
        self.log(
            f"task {cfg.task}: iteration {manifest['iteration']} was already published "
            "by the interrupted run; not running it again"
        )
        verifications = self.verify(exclude=(cfg.task,)) if verify else []
        return IntroductionOutcome(
            cfg.task,
            int(manifest["iteration"]),
            Path.from_dict(manifest["path"]),
            manifest,
            verifications,
            time.perf_counter() - started,
            0,
        )

    # -- publish -----------------------------------------------------------------------------
    def _publish(
        self,
        cfg: IntroduceConfig,
        system: System,
        it: TaskIteration,
        result: IterationResult,
        pool: ComponentPool,
        data: DeviceTask,
        manifests: Mapping[str, Mapping[str, Any]],
        expected: int,
        previous: Mapping[str, Any] | None,
        started: float,
        *,
        lease: Lease | None = None,
    ) -> dict[str, Any]:
        t0 = time.perf_counter()
        best = result.best
        entries = {cid: pool.save(cid) for cid in result.created}
        for cid in best.component_ids:
            if cid not in entries:
                entries[cid] = pool.entries[cid]
        model = pool.model(best)
        test_acc = evaluate(model, data.test[0], data.test[1], autocast=self.device.autocast)
        assert best.quality is not None
        manifest = build_manifest(
            system=system,
            task=cfg.task,
            iteration=it.iteration,
            entries=entries,
            created=result.created,
            breakdown=it.breakdown(best, best.quality),
            test_accuracy=test_acc,
            probe_sha256=probe_sha256(model, data.test[0]),
            num_classes=data.num_classes,
            dataset=cfg.dataset,
            model=cfg.model,
            seed=cfg.seed,
            device_kind=self.device.kind,
            known=it.known,
            previous=previous,
            seconds=time.perf_counter() - started,
        )
        manifest["run"] = _fingerprint(cfg, expected)  # a restarted run sees this one landed
        if lease is not None:
            lease.confirm()  # fencing: CAS on the lease right before the manifest CAS
        try:
            gen = self.store.publish(cfg.task, manifest, expected=expected)
        except PreconditionFailed as err:
            raise FencedError(
                f"task {cfg.task}: another writer published it while this run was going "
                f"(manifest changed under us); this run's result is discarded: {err}"
            ) from err
        self.store.clear_resume(cfg.task)
        uri = f"{self.store.uri}/tasks/{cfg.task}/manifest.json#{gen}"
        self.emit(
            event="published",
            checkpoint_uri=uri,
            test_accuracy=test_acc,
            params_added=manifest["params"]["added"],
            accounted_params=manifest["score"]["accounted_params"],
            penalty=manifest["score"]["penalty"],
            best_score=best.score,
            best_accuracy=best.quality,
            checkpoint_seconds=time.perf_counter() - t0,
            system_params=sum(c.num_params for c in system.components.values()),
            component_count=len(system.components),
        )
        return manifest

    # -- verification --------------------------------------------------------------------------
    def verify(
        self, tasks: Sequence[str] | None = None, exclude: Sequence[str] = ()
    ) -> list[Verification]:
        """Re-check published tasks against their manifests (weights hashes, test accuracy)."""
        _, manifests, pool = self.load()
        names = [t for t in (tasks or sorted(manifests)) if t not in exclude]
        return [verify_task(manifests[t], pool, self.data, self.device.kind) for t in names]


def _score_fn(it: TaskIteration, path: Path) -> Callable[[float], float]:
    """The score a validation quality gives ``path`` in this iteration."""
    return lambda quality: it.breakdown(path, quality).score


def _fingerprint(cfg: IntroduceConfig, expected: int) -> str:
    """Identifies a resumable run: same config (minus runtime knobs), same base manifest."""
    d = cfg.to_dict()
    for key in ("metrics_port", "device", "agent_id"):
        d.pop(key, None)
    return f"{zlib.crc32(repr(sorted(d.items())).encode()):08x}-{expected}"
