"""Everything a task iteration checks before it writes anything: bad input fails here, fast.

In order, reading only: the store (its root present and healthy, the task itself not damaged;
other damaged tasks are named and left out), the model fields against the root the store
already has (or, for a bootstrap, the preset and image size), the task's data (its source
described by ``source_info``: a listing and one decoded image; its splits selected lazily,
nothing else decoded, and kept for the run: labels against the source, at least two
classes), and the memory the run needs against what the device has (the data's share is
what stays resident: the whole task when it fits the in-memory cache, else the validation
examples, plus on a CPU the batches in flight). Each problem is a typed error naming the
field or the object (exit 2); nothing, not even the task's lease, has been written yet.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from pathlib import Path

from mutask.contract import ROOT_TASK
from mutask.trainer.config import ConfigError, IntroduceConfig, ModelConfig
from mutask.trainer.data import DatasetError, SourceInfo, TaskData, load_task, source_info
from mutask.trainer.evolution import ViTShape
from mutask.trainer.iteration.engine import Engine
from mutask.trainer.iteration.taskdata import native_size
from mutask.trainer.limits import MAX_CLASSES
from mutask.trainer.models import get_shape
from mutask.trainer.runtime.memory import GIB, available_bytes, training_bytes
from mutask.trainer.store.damage import StoreScan
from mutask.trainer.store.objects import EmptyStore, StoreDamaged

MODEL_FIELDS = ("preset", "image_size", "weights")


@dataclass(frozen=True)
class Preflight:
    """What the checks found: the config to run (model fields filled from the root when not
    given), whether the root must be bootstrapped first, and the store's damage."""

    cfg: IntroduceConfig
    bootstrap: bool
    scan: StoreScan


def preflight(
    engine: Engine,
    cfg: IntroduceConfig,
    *,
    explicit: Collection[str] = MODEL_FIELDS,
    log: Callable[[str], None] | None = None,
) -> Preflight:
    """Check ``cfg`` against the store, its data and the device (see the module doc).

    ``explicit``: the model fields the user gave (a config file gives them all); the others
    are taken from the store's root.
    """
    say = log or engine.log
    found = engine.store.scan()
    bootstrap = _check_root(engine.store.uri, found, cfg)
    if cfg.task in found.damaged:
        raise StoreDamaged(
            f"task {cfg.task} is damaged, a revisit cannot build on it: {found.problems(cfg.task)} "
            f"(restore tasks/{cfg.task}/manifest.json, or remove it to introduce the task afresh)"
        )
    for line in found.summary():
        say(f"mutask: warning: {line} (left out of this run; `mutask verify` lists the damage)")
    info, data = _load(engine, cfg)
    if bootstrap:
        if cfg.model.image_size == 0:  # the data's own size, rounded up to the patch
            patch = _bootstrap_shape(replace(cfg.model, image_size=224)).patch
            size = native_size(data, patch)
            cfg = replace(cfg, model=replace(cfg.model, image_size=size))
        shape = _bootstrap_shape(cfg.model)
        _check_weights_file(cfg.model.weights)
    else:
        root = found.manifests[ROOT_TASK]
        shape = ViTShape(**root["shape"])
        cfg = replace(cfg, model=_root_model(cfg.model, root, shape, explicit))
    _check_memory(engine, cfg, shape, data, info)
    engine.data.get(cfg.task, cfg.dataset, shape.image_size, loaded=data)
    return Preflight(cfg, bootstrap, found)


def _check_root(uri: str, found: StoreScan, cfg: IntroduceConfig) -> bool:
    """Whether the root must be bootstrapped; errors when the store cannot take this run."""
    if ROOT_TASK in found.manifests:
        return False
    if ROOT_TASK in found.damaged:
        raise StoreDamaged(
            f"the root model is damaged and every task depends on it: {found.problems(ROOT_TASK)}"
        )
    if found.documents or found.damaged:
        users = sorted(found.missing.get(ROOT_TASK, []) or found.documents)
        raise StoreDamaged(
            f"{uri}/tasks/{ROOT_TASK}/manifest.json is missing although tasks are published "
            f"({', '.join(users)} use its components): restore it from a backup; a new root "
            "would not match them"
        )
    if not cfg.bootstrap_root:
        raise EmptyStore(
            f"{uri} has no root model yet: add --bootstrap-root (bootstrap_root: true) to "
            "create one first, or run `mutask demo`"
        )
    return True


def _bootstrap_shape(model: ModelConfig) -> ViTShape:
    try:
        return get_shape(model.preset, model.image_size)
    except ValueError as err:
        field = "model.preset" if "preset" in str(err) else "model.image_size"
        value = model.preset if field == "model.preset" else model.image_size
        raise ConfigError(field, value, str(err)) from err


def _check_weights_file(weights: str | None) -> None:
    """A local weights file must exist (remote ones are read at bootstrap)."""
    if not weights:
        return
    remote = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", weights) and not weights.startswith("file://")
    path = Path(weights.removeprefix("file://")).expanduser()
    if not remote and not path.is_file():
        raise ConfigError("model.weights", weights, f"no such file: {path}")


def _root_model(
    model: ModelConfig, root: dict[str, object], shape: ViTShape, explicit: Collection[str]
) -> ModelConfig:
    """The model fields of a run on an existing root: the root's; a given one must match."""
    recorded = root.get("model")
    preset = recorded.get("preset") if isinstance(recorded, dict) else None
    if "weights" in explicit and model.weights:
        raise ConfigError(
            "model.weights",
            model.weights,
            "the store already has a root model; pretrained weights only apply when "
            "bootstrapping an empty store",
        )
    if "image_size" in explicit and model.image_size not in (0, shape.image_size):
        raise ConfigError(
            "model.image_size",
            model.image_size,
            f"the store's root model takes {shape.image_size}px images (fixed at bootstrap)",
        )
    if "preset" in explicit and preset is not None and model.preset != preset:
        raise ConfigError(
            "model.preset",
            model.preset,
            f"the store's root model is {preset!r} (fixed at bootstrap)",
        )
    weights = recorded.get("weights") if isinstance(recorded, dict) else None
    return replace(
        model,
        preset=str(preset or model.preset),
        image_size=shape.image_size,
        weights=str(weights) if weights else None,
    )


def _load(engine: Engine, cfg: IntroduceConfig) -> tuple[SourceInfo, TaskData]:
    """The source's description and the task's (lazy) splits, through the engine's source
    cache so the run reads the listing once."""
    sources = engine.data.sources
    info = source_info(cfg.dataset.source, task=cfg.task, cache=sources)
    data = load_task(cfg.task, cfg.dataset, cache=sources)
    if data.num_classes < 2:
        field, value = _class_field(cfg)
        raise DatasetError(
            cfg.task, field, value, f"the task has {data.num_classes} class; it needs at least two"
        )
    if data.num_classes > MAX_CLASSES:
        field, value = _class_field(cfg)
        raise DatasetError(
            cfg.task, field, value, f"{data.num_classes:,} classes (at most {MAX_CLASSES:,})"
        )
    return info, data


def _class_field(cfg: IntroduceConfig) -> tuple[str, object]:
    if cfg.dataset.labels is not None:
        return "dataset.labels", cfg.dataset.labels
    if cfg.dataset.label_map is not None:
        return "dataset.label_map", cfg.dataset.label_map
    return "dataset.source", cfg.dataset.source


def _check_memory(
    engine: Engine, cfg: IntroduceConfig, shape: ViTShape, data: TaskData, info: SourceInfo
) -> None:
    free = available_bytes(engine.device.device)
    if free is None:
        return
    cached = engine.data.will_cache(data, shape.image_size)
    if cached:  # converted once, all three splits kept on the device
        held = len(data.train) + len(data.validation) + len(data.test)
    else:  # streamed: the validation examples stay, plus the uint8 batches in flight
        held = min(len(data.validation), cfg.budget.max_validation_examples)
    at_once = engine.cpu.candidate_workers(engine.device.kind, cfg.budget.candidates)
    need = training_bytes(shape, data.num_classes, held, cfg.budget.batch_size, at_once)
    if not cached and engine.device.device.type == "cpu":  # the loader's buffers share it
        in_flight = engine.data.prefetch * cfg.budget.batch_size * math.prod(info.image_shape)
        need = replace(need, data=need.data + in_flight)
    if need.total <= free:
        return
    value: object
    if need.data >= need.per_candidate * need.candidates and cached:
        field, value = "dataset.source", cfg.dataset.source
        hint = (
            "use fewer examples (dataset.max_train_examples), a smaller model.image_size, or a "
            "smaller in-memory cache (MUTASK_DATA_CACHE_MB) so that it is streamed"
        )
    elif need.data >= need.per_candidate * need.candidates:
        field, value = "budget.max_validation_examples", cfg.budget.max_validation_examples
        hint = "validate on fewer examples, or use a smaller model.image_size"
    else:
        field, value = "budget.batch_size", cfg.budget.batch_size
        hint = "use a smaller batch or fewer workers"
    how = "cached" if cached else "streamed"
    raise ConfigError(
        field,
        value,
        f"the run needs at least {need.total / GIB:.1f} GiB on {engine.device.kind} "
        f"({held:,} images {how} at {shape.image_size}px: {need.data / GIB:.1f} GiB; "
        f"{need.candidates} candidate(s) at batch {cfg.budget.batch_size}: "
        f"{need.per_candidate / GIB:.1f} GiB each) but {free / GIB:.1f} GiB are free: {hint}",
    )
