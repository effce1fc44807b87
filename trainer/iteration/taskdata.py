"""Task data for the training device: each task's splits, cached in memory or streamed.

A task whose three splits fit the in-memory cache budget as model-ready float32 tensors
(``MUTASK_DATA_CACHE_MB``, default 1024 MiB) is converted once and kept on the device (the
small-data cache); a larger one is streamed by loader worker processes at every pass
(:mod:`mutask.trainer.data.sets`). The choice is automatic, per task, and logged; both give
the same batches.

Also what the engine derives from a task's data: its native image size (a root's default
size), a message whenever its images are resized to the system's size, and its label space
(:func:`label_space`: when two tasks' classes mean the same thing).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from mutask.trainer.config import DatasetConfig
from mutask.trainer.data import SourceCache, TaskData, load_task
from mutask.trainer.data.loader import default_prefetch, default_workers
from mutask.trainer.data.sets import (
    CACHE_ENV,
    EvalSet,
    Pipeline,
    TrainSet,
    cache_budget,
    cached_sets,
    model_bytes,
)


@dataclass(frozen=True)
class DeviceTask:
    """A task's train/validation/test sets at the system's image size, for one device."""

    name: str
    num_classes: int
    train: TrainSet
    validation: EvalSet
    test: EvalSet
    cached: bool
    label_space: str = ""


def label_space(dataset: DatasetConfig) -> str:
    """What a task's class numbers mean: its source and its class selection.

    Two tasks whose datasets have the same ``source`` string and the same ``labels`` or
    ``label_map`` (none counts as "all classes, as numbered by the source") have the same
    label space: class ``i`` of one is class ``i`` of the other. Splits, transforms and
    ``max_train_examples`` change which images a task sees, not what its labels mean. A
    new path's head may start from its parent's head only within one label space (see
    :func:`mutask.trainer.evolution.make_child`).
    """
    if dataset.labels is not None:
        classes = "labels=" + ",".join(str(c) for c in dataset.labels)
    elif dataset.label_map is not None:
        pairs = sorted((int(k), v) for k, v in dataset.label_map.items())
        classes = "map=" + ",".join(f"{k}:{v}" for k, v in pairs)
    else:
        classes = "all"
    return f"{dataset.source}|{classes}"


def native_size(data: TaskData, patch: int = 1) -> int:
    """The side of a task's images (the larger one), rounded up to a multiple of ``patch``."""
    h, w, _ = data.image_shape
    side = max(h, w)
    return -(-side // patch) * patch


class TaskDataCache:
    """Loads each (task, dataset, image size) once; owned by one engine.

    ``cache_bytes`` (default: the ``MUTASK_DATA_CACHE_MB`` budget), ``workers`` and
    ``prefetch`` (default: ``MUTASK_DATA_WORKERS`` / ``MUTASK_DATA_PREFETCH``) set how;
    ``log`` gets the choice and data notes (default: standard error, ``mutask: data: ...``).
    """

    def __init__(
        self,
        device: torch.device,
        *,
        log: Callable[[str], None] | None = None,
        cache_bytes: int | None = None,
        workers: int | None = None,
        prefetch: int | None = None,
    ) -> None:
        self.device = device
        self.log = log or _to_stderr
        self.cache_bytes = cache_budget() if cache_bytes is None else cache_bytes
        self.workers = default_workers() if workers is None else workers
        self.prefetch = default_prefetch() if prefetch is None else prefetch
        self.sources = SourceCache()
        self._cache: dict[str, DeviceTask] = {}
        self._raw: dict[str, TaskData] = {}

    def raw(self, task: str, dataset: DatasetConfig) -> TaskData:
        """The task's splits as loaded (lazy ``Examples``; cached)."""
        key = json.dumps([task, asdict(dataset)], sort_keys=True)
        if key not in self._raw:
            self._raw[key] = load_task(task, dataset, cache=self.sources)
        return self._raw[key]

    def get(
        self, task: str, dataset: DatasetConfig, image_size: int, loaded: TaskData | None = None
    ) -> DeviceTask:
        """The task's sets; ``loaded``: its data already loaded (by the preflight)."""
        key = json.dumps([task, asdict(dataset), image_size], sort_keys=True)
        if key not in self._cache:
            self._cache[key] = self._load(task, dataset, image_size, loaded)
        return self._cache[key]

    def will_cache(self, data: TaskData, image_size: int) -> bool:
        """Whether ``data`` fits the in-memory cache at ``image_size`` (else it is streamed)."""
        total = len(data.train) + len(data.validation) + len(data.test)
        return model_bytes(total, image_size) <= self.cache_bytes

    def _load(
        self, task: str, dataset: DatasetConfig, image_size: int, loaded: TaskData | None
    ) -> DeviceTask:
        data = loaded if loaded is not None else self.raw(task, dataset)
        splits = (data.train, data.validation, data.test)
        total = sum(len(s) for s in splits)
        need = model_bytes(total, image_size)
        cache = self.will_cache(data, image_size)
        sizes = ", ".join(
            f"{len(s):,} {n}" for s, n in zip(splits, ("train", "validation", "test"), strict=True)
        )
        what = f"data: task {task!r}: {sizes} images at {image_size} px are {_mib(need)} as float32"
        h, w, _ = data.image_shape
        resized = (
            f"; task {task}: its {h}x{w} images are resized to {image_size}x{image_size} "
            "(the system's image size)"
            if (h, w) != (image_size, image_size)
            else ""
        )
        if cache:
            self.log(
                f"{what}, within the {_mib(self.cache_bytes)} in-memory cache ({CACHE_ENV}): "
                f"converted once and kept on {self.device}{resized}"
            )
        else:
            self.log(
                f"{what}, over the {_mib(self.cache_bytes)} in-memory cache ({CACHE_ENV}): "
                f"streamed by {self.workers} loader worker(s) with {self.prefetch} batches "
                f"in flight, images kept as uint8 at their stored size until batched{resized}"
            )
        pipeline = Pipeline(
            self.device, image_size, self.workers, self.prefetch, task=task, log=self.log
        )
        train, validation, test = cached_sets(splits, pipeline, cache)
        return DeviceTask(
            task, data.num_classes, train, validation, test, cache, label_space(dataset)
        )


def _to_stderr(line: str) -> None:
    print(f"mutask: {line}", file=sys.stderr, flush=True)


def _mib(size: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size / 2**10:.1f} KiB"
