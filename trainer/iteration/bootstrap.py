"""Creating the root model: from pretrained weights, or trained from scratch until it converges.

The root is published like any task (:func:`~mutask.trainer.iteration.publish.publish`),
under the reserved owner ``__root__``; its components are never trainable afterwards. A
root trained from scratch is one fully trainable candidate (there is nothing to share yet),
trained in stages of 1, 2, 4, … epochs, each a warmup + cosine cycle from the best snapshot
so far (warm restarts); it stops when a stage gains less than ``MIN_GAIN`` validation
accuracy, or at ``model.max_epochs``. The root's image size defaults to its data's own.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any

from mutask.trainer.config import IntroduceConfig
from mutask.trainer.data import Augmenter
from mutask.trainer.evolution import (
    ROOT_TASK,
    ChildPlan,
    Component,
    NewComponent,
    System,
    ViTShape,
    fresh_plan,
)
from mutask.trainer.evolution.hparams import DEPTH
from mutask.trainer.iteration.budget import epoch_examples
from mutask.trainer.iteration.engine import Engine
from mutask.trainer.iteration.final import train_on
from mutask.trainer.iteration.generation import search_space
from mutask.trainer.iteration.pool import ComponentPool
from mutask.trainer.iteration.publish import Publication, publish
from mutask.trainer.iteration.seeds import derive_seed
from mutask.trainer.iteration.taskdata import DeviceTask, label_space, native_size
from mutask.trainer.models import get_shape, load_root_weights
from mutask.trainer.store.objects import PreconditionFailed, StoreError
from mutask.trainer.training import Candidate, Momentum, TrainSettings

# SGD on a ViT trained from scratch needs a larger step than the spec's fine-tuning default
# (0.01): on the demo's MNIST root, 0.1 reaches ~0.90 validation accuracy in 600 steps where
# 0.01 stays under 0.5. The root trains at SCRATCH_LR without augmentation; its path records
# the search space's defaults, which is where its children start (then tune them).
SCRATCH_LR = 0.1
MIN_GAIN = 0.005  # a stage that adds less validation accuracy than this ends the training
ROUNDS_PER_STAGE = 2  # validations per stage (best-checkpoint selection)


def root_shape(engine: Engine, cfg: IntroduceConfig) -> ViTShape:
    """The root's shape: ``cfg.model``'s preset at its image size, or (0) at the native
    size of ``cfg.dataset``'s images rounded up to a multiple of the preset's patch."""
    size = cfg.model.image_size
    if size == 0:
        patch = get_shape(cfg.model.preset, 224).patch  # 224: every preset's patch divides it
        size = native_size(engine.data.raw(cfg.task, cfg.dataset), patch)
        engine.log(f"root image size {size}x{size}: the size of {cfg.task}'s images")
    return get_shape(cfg.model.preset, size)


def bootstrap_root(engine: Engine, cfg: IntroduceConfig) -> dict[str, Any]:
    """Publish the root path; refuse if the store already has one."""
    started = time.perf_counter()
    if engine.store.read_manifest(ROOT_TASK) is not None:
        raise StoreError(f"{engine.store.uri}: the store already has a root model")
    shape = root_shape(engine, cfg)
    cfg = replace(cfg, model=replace(cfg.model, image_size=shape.image_size))
    engine.cpu.configure(engine.device.kind, shape.hidden)
    system = System(shape)
    hparams = search_space(cfg, shape).defaults()
    hparams[DEPTH] = shape.depth
    pool = ComponentPool(engine.store, shape, engine.device.device, {}, {}, cfg.seed)
    data = None
    quality = 0.0
    examples = 0
    if cfg.model.weights:
        weights = load_root_weights(cfg.model.weights, shape)
        classes = int(weights["head"]["bias"].shape[0]) if "head" in weights else 1
        # the weights' head means the classes of the dataset given with them (a child's
        # head starts from it only for the same label space and class count)
        space = label_space(cfg.dataset) if "head" in weights else ""
        plan = fresh_plan(f"{ROOT_TASK}~0", ROOT_TASK, shape, hparams, classes, label_space=space)
        for new in plan.new:
            module = pool.materialize(new)
            if new.component.name in weights:
                module.load_state_dict(weights[new.component.name])
    else:
        data = engine.task_data(cfg, shape.image_size)
        plan = fresh_plan(
            f"{ROOT_TASK}~0",
            ROOT_TASK,
            shape,
            hparams,
            data.num_classes,
            label_space=data.label_space,
        )
        quality, examples = _train_from_scratch(engine, cfg, pool, plan, data)
    root = plan.path.scored(quality, quality)
    system.add_components(n.component for n in plan.new)
    system.retain(root)
    pool.freeze(c for c in root.component_ids)
    try:
        manifest, _ = publish(
            engine.store,
            system,
            pool,
            cfg,
            engine.device,
            Publication(
                task=ROOT_TASK,
                iteration=0,
                created=list(root.component_ids),
                breakdown=None,
                num_classes=_head_classes(plan.new),
                dataset=cfg.dataset if data is not None else None,
                test=data.test if data is not None else None,
                known={},
                previous=None,
                started=started,
                extra={
                    "bootstrap_task": cfg.task if data is not None else None,
                    "training": {
                        "examples": examples,
                        "seconds": round(time.perf_counter() - started, 1),
                    },
                },
            ),
            expected=0,
        )
    except PreconditionFailed as err:
        raise StoreError(f"{engine.store.uri}: another process bootstrapped the root") from err
    if data is not None:
        engine.log(
            f"root bootstrapped on {cfg.task}: val {quality:.4f}, "
            f"test {manifest['test_accuracy']:.4f}, {examples:,} training examples, "
            f"{time.perf_counter() - started:.0f} s"
        )
    return manifest


def stage_epochs(max_epochs: float) -> list[float]:
    """Epochs of each training stage: 1, 2, 4, … while they fit in ``max_epochs`` (the last
    stage takes what is left)."""
    stages: list[float] = []
    length, left = 1.0, max_epochs
    while left > 1e-9:
        stages.append(min(length, left))
        left -= stages[-1]
        length *= 2
    return stages


def _train_from_scratch(
    engine: Engine,
    cfg: IntroduceConfig,
    pool: ComponentPool,
    plan: ChildPlan,
    data: DeviceTask,
) -> tuple[float, int]:
    """Train the fresh root in stages until it converges; its validation accuracy and the
    training examples it took."""
    own = [pool.materialize(n) for n in plan.new]
    model = pool.model(plan.path)
    hparams = {**plan.path.hparams, "opt_lr": SCRATCH_LR}
    limit = cfg.budget.max_validation_examples
    validation = data.validation.tensors(limit)
    seed = derive_seed(cfg.seed, ROOT_TASK)
    stream = data.train.stream(cfg.budget.batch_size, seed, Augmenter({}))
    epoch = epoch_examples(len(data.train))
    momentum: Momentum = [{} for _ in own]
    best: float | None = None
    examples = 0
    stages = stage_epochs(cfg.model.max_epochs)
    for i, epochs in enumerate(stages):
        steps = max(ROUNDS_PER_STAGE, math.ceil(epochs * epoch / cfg.budget.batch_size))
        per_round = math.ceil(steps / ROUNDS_PER_STAGE)
        bar = engine.progress.bar(
            per_round * ROUNDS_PER_STAGE, f"root on {cfg.task}: stage {i + 1} ({epochs:g} ep)"
        )

        def tick(_step: int, bar: Any = bar) -> None:
            bar.update(1)

        try:
            result, stage_momentum = train_on(
                Candidate(model, own, momentum, hparams, bar=-math.inf if best is None else best),
                iter(stream),
                validation,
                TrainSettings(ROUNDS_PER_STAGE, per_round, autocast=engine.device.autocast),
                on_step=tick,
                should_stop=engine.should_stop,
            )
        finally:
            bar.close()
        examples += result.examples
        gain = (result.quality or 0.0) - (best or 0.0) if result.quality is not None else 0.0
        if result.quality is not None:
            best, momentum = result.quality, stage_momentum
        engine.log(
            f"root stage {i + 1}/{len(stages)} ({epochs:g} epochs): validation "
            f"{[round(r.quality, 4) for r in result.rounds]}, best {best:.4f} (+{gain:.4f})"
        )
        engine.progress.emit(event="root_stage", stage=i + 1, best_accuracy=best)
        if i > 0 and gain < MIN_GAIN:
            engine.log(f"root converged: stage {i + 1} gained less than {MIN_GAIN}")
            break
    for n, mom in zip(plan.new, momentum, strict=True):
        pool.momentum[n.component.id] = mom
    return best or 0.0, examples


def _head_classes(new: tuple[NewComponent, ...]) -> int:
    heads: list[Component] = [n.component for n in new if n.component.name == "head"]
    return heads[0].num_classes if heads else 0
