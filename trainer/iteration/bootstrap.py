"""Creating the root model: from pretrained weights, or trained from scratch on a first task.

The root is published like any task (:func:`~mutask.trainer.iteration.publish.publish`),
under the reserved owner ``__root__``; its components are never trainable afterwards. A
root trained from scratch is one fully trainable candidate (there is nothing to share yet).
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Any

from mutask.trainer.config import IntroduceConfig
from mutask.trainer.data import Augmenter
from mutask.trainer.evolution import ROOT_TASK, Component, NewComponent, System, fresh_plan
from mutask.trainer.evolution.hparams import DEPTH
from mutask.trainer.iteration.engine import Engine
from mutask.trainer.iteration.generation import search_space, train_settings
from mutask.trainer.iteration.pool import ComponentPool
from mutask.trainer.iteration.publish import Publication, publish
from mutask.trainer.iteration.seeds import derive_seed
from mutask.trainer.models import get_shape, load_root_weights
from mutask.trainer.store.objects import PreconditionFailed, StoreError
from mutask.trainer.training import Candidate, train_candidate

# SGD on a ViT trained from scratch needs a larger step than the spec's fine-tuning default
# (0.01): on the demo's MNIST root, 0.1 reaches ~0.90 validation accuracy in 600 steps where
# 0.01 stays under 0.5. Children inherit the root's hparams, then tune them.
SCRATCH_LR = 0.1


def bootstrap_root(engine: Engine, cfg: IntroduceConfig) -> dict[str, Any]:
    """Publish the root path; refuse if the store already has one."""
    started = time.perf_counter()
    if engine.store.read_manifest(ROOT_TASK) is not None:
        raise StoreError(f"{engine.store.uri}: the store already has a root model")
    shape = get_shape(cfg.model.preset, cfg.model.image_size)
    engine.cpu.configure(engine.device.kind, shape.hidden)
    system = System(shape)
    hparams = search_space(cfg, shape).defaults()
    hparams[DEPTH] = shape.depth
    pool = ComponentPool(engine.store, shape, engine.device.device, {}, {}, cfg.seed)
    data = None
    quality = 0.0
    if cfg.model.weights:
        weights = load_root_weights(cfg.model.weights, shape)
        classes = int(weights["head"]["bias"].shape[0]) if "head" in weights else 1
        plan = fresh_plan(f"{ROOT_TASK}~0", ROOT_TASK, shape, hparams, classes)
        for new in plan.new:
            module = pool.materialize(new)
            if new.component.name in weights:
                module.load_state_dict(weights[new.component.name])
    else:
        hparams["opt_lr"] = SCRATCH_LR
        data = engine.task_data(cfg, shape.image_size)
        plan = fresh_plan(f"{ROOT_TASK}~0", ROOT_TASK, shape, hparams, data.num_classes)
        own = [pool.materialize(n) for n in plan.new]
        stream = data.train.stream(
            cfg.budget.batch_size, derive_seed(cfg.seed, ROOT_TASK), Augmenter({})
        )
        rounds = cfg.budget.validation_rounds * cfg.budget.generations
        result, momentum = train_candidate(
            Candidate(pool.model(plan.path), own, [{} for _ in own], hparams),
            iter(stream),
            data.validation.tensors(),
            replace(train_settings(cfg, engine.device), rounds=rounds),
            should_stop=engine.should_stop,
        )
        for new, mom in zip(plan.new, momentum, strict=True):
            pool.momentum[new.component.id] = mom
        quality = result.quality or 0.0
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
                extra={"bootstrap_task": cfg.task if data is not None else None},
            ),
            expected=0,
        )
    except PreconditionFailed as err:
        raise StoreError(f"{engine.store.uri}: another process bootstrapped the root") from err
    if data is not None:
        engine.log(
            f"root bootstrapped on {cfg.task}: val {quality:.4f}, "
            f"test {manifest['test_accuracy']:.4f}"
        )
    return manifest


def _head_classes(new: tuple[NewComponent, ...]) -> int:
    heads: list[Component] = [n.component for n in new if n.component.name == "head"]
    return heads[0].num_classes if heads else 0
