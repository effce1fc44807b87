"""Task data on the training device: each task's splits loaded and prepared once per process."""

from __future__ import annotations

import json
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


class TaskDataCache:
    """Loads and prepares each (task, dataset, image size) once; owned by one engine."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self._cache: dict[str, DeviceTask] = {}

    def get(
        self, task: str, dataset: DatasetConfig, image_size: int, loaded: TaskData | None = None
    ) -> DeviceTask:
        """The task's tensors; ``loaded``: its data already loaded (by the preflight)."""
        key = json.dumps([task, asdict(dataset), image_size], sort_keys=True)
        if key not in self._cache:
            data = loaded if loaded is not None else load_task(task, dataset)
            self._cache[key] = DeviceTask(
                name=task,
                num_classes=data.num_classes,
                train=prepare(data.train, image_size, self.device),
                validation=prepare(data.validation, image_size, self.device),
                test=prepare(data.test, image_size, self.device),
            )
        return self._cache[key]
