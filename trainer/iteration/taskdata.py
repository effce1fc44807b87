"""Task data on the training device: each task's splits loaded and prepared once per process.

Also what the engine derives from a task's data: its native image size (a root's default
size), a message whenever its images are resized to the system's size, and its label
space (:func:`label_space`: when two tasks' classes mean the same thing).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch

from mutask.trainer.config import DatasetConfig
from mutask.trainer.data import TaskData, load_task, prepare

Tensors = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class DeviceTask:
    """A task's train/validation/test tensors at the system's image size, on one device."""

    name: str
    num_classes: int
    train: Tensors
    validation: Tensors
    test: Tensors
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
    """Loads and prepares each (task, dataset, image size) once; owned by one engine.

    ``log`` (default: standard error, so command output stays clean) says when a task's
    images are resized to the system's size."""

    def __init__(self, device: torch.device, log: Callable[[str], None] | None = None) -> None:
        self.device = device
        self.log = log or (lambda line: print(line, file=sys.stderr))
        self._raw: dict[str, TaskData] = {}
        self._cache: dict[str, DeviceTask] = {}

    def raw(self, task: str, dataset: DatasetConfig) -> TaskData:
        """The task's uint8 splits as loaded (cached)."""
        key = json.dumps([task, asdict(dataset)], sort_keys=True)
        if key not in self._raw:
            self._raw[key] = load_task(task, dataset)
        return self._raw[key]

    def get(self, task: str, dataset: DatasetConfig, image_size: int) -> DeviceTask:
        key = json.dumps([task, asdict(dataset), image_size], sort_keys=True)
        if key not in self._cache:
            data = self.raw(task, dataset)
            h, w, _ = data.image_shape
            if (h, w) != (image_size, image_size):
                self.log(
                    f"task {task}: its {h}x{w} images are resized to {image_size}x{image_size} "
                    "(the system's image size)"
                )
            self._cache[key] = DeviceTask(
                name=task,
                num_classes=data.num_classes,
                train=prepare(data.train, image_size, self.device),
                validation=prepare(data.validation, image_size, self.device),
                test=prepare(data.test, image_size, self.device),
                label_space=label_space(dataset),
            )
        return self._cache[key]
