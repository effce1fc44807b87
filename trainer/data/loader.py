"""Batches read in worker processes: a torch ``DataLoader`` over ``BatchReader``.

The main process decides every batch (a :class:`Plan`: which examples, which augmentation
numbers) and hands the plans, in order, to the loader as its sampler. A worker reads the
plan's examples (decoding files on the way), collates them into one uint8 batch at their
stored size (``collate``) and, when the batch is to be finished there, converts it to the
model's input (``to_model``: resize, normalise) and augments it. The loader returns batches
in plan order whatever the number of workers, so the stream is the same for any worker
count. Prefetch is bounded: at most ``workers * prefetch_factor`` batches are in flight.

A data error in a worker comes back as a :class:`Failed` item and is raised again, with its
type (``DatasetError``), in the main process.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset

from mutask.trainer.data.augment import AugmentDraws, Augmenter
from mutask.trainer.data.decode import conversions
from mutask.trainer.data.errors import DatasetError
from mutask.trainer.data.examples import Examples
from mutask.trainer.data.tensors import collate, to_model
from mutask.trainer.runtime.threads import available_cpus


@dataclass(frozen=True)
class Plan:
    """Batch ``number`` of a stream: example positions ``index`` and augmentation ``draws``;
    ``state`` is the stream's state once this batch is consumed (for checkpoints)."""

    number: int
    index: torch.Tensor
    draws: AugmentDraws = field(default_factory=AugmentDraws)
    state: dict[str, object] | None = None


@dataclass(frozen=True)
class Loaded:
    """A batch as a worker made it: ``x`` (uint8 [B, H, W, C], or finished float
    [B, 3, S, S]), labels ``y``, and image modes converted on the way (mode -> (the mode
    it became, first file))."""

    number: int
    x: torch.Tensor
    y: torch.Tensor
    converted: dict[str, tuple[str, str]]


@dataclass(frozen=True)
class Failed:
    """A batch whose data could not be read."""

    number: int
    error: DatasetError


class BatchReader(Dataset[Loaded | Failed]):
    """Reads the batch a :class:`Plan` describes (see the module doc)."""

    def __init__(
        self,
        examples: Examples,
        image_size: int,
        augmenter: Augmenter | None,
        *,
        finish: bool,
        task: str = "?",
    ) -> None:
        self.examples = examples
        self.image_size = image_size
        self.augmenter = augmenter
        self.finish = finish
        self.task = task

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, plan: Plan) -> Loaded | Failed:  # type: ignore[override]
        try:
            read = self.examples.read(plan.index.numpy(), task=self.task)
        except DatasetError as err:
            return Failed(plan.number, err)
        x = torch.from_numpy(collate(read.images, self.image_size))
        if self.finish:
            x = to_model(x, self.image_size)
            if self.augmenter is not None:
                x = self.augmenter.apply(x, plan.draws)
        return Loaded(plan.number, x, torch.from_numpy(read.labels), conversions(read.modes))


def default_workers() -> int:
    """``MUTASK_DATA_WORKERS``, else half the CPUs this process may use (1 to 8)."""
    raw = os.environ.get("MUTASK_DATA_WORKERS", "").strip()
    if raw:
        return max(0, int(raw))
    return min(8, max(1, available_cpus() // 2))


def default_prefetch() -> int:
    """``MUTASK_DATA_PREFETCH``: batches in flight in all (default 4)."""
    return max(1, int(os.environ.get("MUTASK_DATA_PREFETCH", "4")))


def _identity(item: Loaded | Failed) -> Loaded | Failed:
    return item


def load_batches(
    reader: BatchReader,
    plans: Iterable[Plan],
    *,
    workers: int,
    prefetch: int,
    pin_memory: bool = False,
) -> Iterator[Loaded | Failed]:
    """The batches of ``plans``, in order, read by ``workers`` processes (0: in this one)
    with at most ``prefetch`` batches in flight."""
    loader: DataLoader[Loaded | Failed] = DataLoader(
        reader,
        batch_size=None,
        sampler=plans,  # type: ignore[arg-type]
        collate_fn=_identity,  # type: ignore[arg-type]
        num_workers=workers,
        prefetch_factor=max(1, math.ceil(prefetch / workers)) if workers else None,
        pin_memory=pin_memory,
    )
    return iter(loader)
