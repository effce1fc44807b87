"""The quality suite's methods: mutask (µ2Net via the engine) and the four baselines.

Every method starts from the same published root and trains each task with the same
number of training examples; each returns one :class:`TaskRecord` per task. Baselines use
the search space's default hyperparameters (what a µ2Net child starts from) and the same
best-checkpoint-on-validation rule as mutask.
"""

from __future__ import annotations

import copy
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import nn

from mutask.trainer.config import BudgetConfig, DatasetConfig, IntroduceConfig, SearchConfig
from mutask.trainer.data import Augmenter
from mutask.trainer.evolution import System, architecture, large_space
from mutask.trainer.iteration.engine import Engine
from mutask.trainer.iteration.pool import component_seed
from mutask.trainer.iteration.seeds import derive_seed
from mutask.trainer.iteration.verify import split_accuracy
from mutask.trainer.models import PathModel, build_component
from mutask.trainer.runtime.device import DeviceChoice
from mutask.trainer.store.system_store import SystemStore, system_from_manifests
from mutask.trainer.training import Candidate, TrainSettings, train_candidate

Task = tuple[str, DatasetConfig]
BASELINES = ("finetune", "head", "adapters", "sequential")
ADAPTER_DIM = 16


@dataclass
class TaskRecord:
    """One task's outcome under one method (accuracies are test top-1)."""

    method: str
    task: str
    acc_own: float
    acc_final: float
    params_added: int
    total_params: int
    seconds: float

    @property
    def forgetting(self) -> float:
        return self.acc_own - self.acc_final


def steps_per_task(budget: BudgetConfig) -> int:
    """Training steps per task that mutask spends (G * K * V * N): the shared budget."""
    return (
        budget.generations * budget.candidates * budget.validation_rounds * budget.steps_per_round
    )


def system_params(system: System) -> int:
    return sum(c.num_params for c in system.components.values())


def run_mutask(
    root_store: Path,
    store: Path,
    base: IntroduceConfig,
    tasks: Sequence[Task],
    size_scale: float,
    device: DeviceChoice,
    workers: int = 1,
) -> tuple[list[TaskRecord], System]:
    """Introduce the tasks one after another with µ2Net; re-check every task at the end."""
    shutil.copytree(root_store, store)
    engine = Engine(
        SystemStore.open(str(store)),
        device,
        progress_bars=False,
        log=lambda _m: None,
        workers=workers,
    )
    method = f"mutask s={size_scale:g}"
    records: list[TaskRecord] = []
    for name, dataset in tasks:
        cfg = replace(
            base,
            task=name,
            dataset=dataset,
            store=str(store),
            search=SearchConfig(size_scale=size_scale),
        )
        out = engine.introduce(cfg, verify=False)
        system = system_from_manifests(engine.store.manifests())
        records.append(
            TaskRecord(
                method,
                name,
                float(out.manifest["test_accuracy"]),
                0.0,
                int(out.manifest["params"]["added"]),
                system_params(system),
                out.seconds,
            )
        )
    final = {v.task: v for v in engine.verify()}
    for rec in records:
        v = final[rec.task]
        if not v.ok:
            raise AssertionError(f"mutask forgot task {rec.task}: {v}")
        rec.acc_final = float(v.test_accuracy_now or 0.0)
    return records, system_from_manifests(engine.store.manifests())


def _numel(modules: Sequence[nn.Module]) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def run_baseline(
    kind: str,
    root_store: Path,
    base: IntroduceConfig,
    tasks: Sequence[Task],
    device: DeviceChoice,
) -> list[TaskRecord]:
    """``finetune`` (full copy per task), ``head`` (frozen root + new head), ``adapters``
    (frozen root + an adapter before every block + new head) or ``sequential`` (one copy
    fine-tuned on every task in turn, a head per task; earlier tasks can be forgotten)."""
    engine = Engine(
        SystemStore.open(str(root_store)), device, progress_bars=False, log=lambda _m: None
    )
    system, _, pool = engine.load(base.seed)
    shape = system.shape
    root = [(name, pool.get(cid)) for name, cid in system.root.components]
    trunk = [(n, m) for n, m in root if n != "head"]
    total = system_params(system)
    budget = base.budget
    steps = steps_per_task(budget)
    settings = TrainSettings(
        budget.validation_rounds, steps // budget.validation_rounds, autocast=device.autocast
    )
    space = large_space(max_layers=shape.depth, image_size=shape.image_size)
    hparams = space.defaults()
    augmenter = Augmenter(hparams)
    shared_trunk: list[tuple[str, nn.Module]] | None = None
    models: dict[str, PathModel] = {}
    records: list[TaskRecord] = []
    for name, dataset in tasks:
        started = time.perf_counter()  # wall time per task, data loading included (as mutask)
        data = engine.task_data(replace(base, task=name, dataset=dataset), shape.image_size)
        gen = torch.Generator().manual_seed(component_seed(base.seed, f"{kind}/{name}"))
        head = build_component("head", shape, num_classes=data.num_classes, generator=gen)
        head = head.to(device.device)
        own: list[nn.Module] = [head]
        added: list[nn.Module] = [head]
        if kind == "finetune":
            parts = [(n, copy.deepcopy(m).requires_grad_(True)) for n, m in trunk]
            own += [m for _, m in parts]
            added += [m for _, m in parts]
        elif kind == "sequential":
            if shared_trunk is None:
                shared_trunk = [(n, copy.deepcopy(m).requires_grad_(True)) for n, m in trunk]
                added += [m for _, m in shared_trunk]
            parts = list(shared_trunk)
            own += [m for _, m in parts]
        elif kind == "head":
            parts = list(trunk)
        elif kind == "adapters":
            by_name = dict(trunk)
            parts = []
            for n in architecture(shape.depth, set(range(shape.depth)))[:-1]:
                if n.startswith("residual_adapter_"):
                    adapter = build_component(n, shape, adapter_dim=ADAPTER_DIM, generator=gen)
                    parts.append((n, adapter.to(device.device)))
                    own.append(parts[-1][1])
                    added.append(parts[-1][1])
                else:
                    parts.append((n, by_name[n]))
        else:
            raise ValueError(f"unknown baseline {kind!r}")
        model = PathModel([*parts, ("head", head)])
        val = data.validation.tensors(budget.max_validation_examples)
        stream = data.train.stream(budget.batch_size, derive_seed(base.seed, name, kind), augmenter)
        train_candidate(
            Candidate(model, own, [{} for _ in own], hparams), iter(stream), val, settings
        )
        total += _numel(added)
        models[name] = model
        acc = split_accuracy(model, data.test, device.autocast)
        seconds = time.perf_counter() - started
        records.append(TaskRecord(kind, name, acc, 0.0, _numel(added), total, seconds))
    for rec, (name, dataset) in zip(records, tasks, strict=True):
        data = engine.task_data(replace(base, task=name, dataset=dataset), shape.image_size)
        rec.acc_final = split_accuracy(models[name], data.test, device.autocast)
    return records


__all__ = ["BASELINES", "TaskRecord", "run_baseline", "run_mutask", "steps_per_task"]
