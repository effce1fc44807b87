"""A task split as model-ready batches on one device: ``TrainSet`` (seeded training streams)
and ``EvalSet`` (every example once, in order), each either cached or streamed.

Cached: the split was converted once (``to_model``) and its float32 tensors stay in memory
on the device, the small-data cache. Streamed: loader workers read it for every pass. Which
one a task gets is decided by :func:`fits_cache` against the budget :func:`cache_budget`
(``MUTASK_DATA_CACHE_MB``, default 1024 MiB) by whoever builds the sets (the engine's task
data cache), and logged there. Both give the same numbers.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from mutask.trainer.data.augment import Augmenter
from mutask.trainer.data.examples import Examples
from mutask.trainer.data.loader import BatchReader, Failed, Plan, load_batches
from mutask.trainer.data.stream import BatchStream, Log, note_conversions, resize_on_device
from mutask.trainer.data.tensors import prepare, to_model

Batch = tuple[torch.Tensor, torch.Tensor]
CACHE_ENV = "MUTASK_DATA_CACHE_MB"
DEFAULT_CACHE_MB = 1024
_FILL_BATCH = 256


def cache_budget() -> int:
    """Bytes the in-memory cache may use per task: ``MUTASK_DATA_CACHE_MB`` (MiB)."""
    return int(float(os.environ.get(CACHE_ENV, DEFAULT_CACHE_MB)) * 2**20)


def model_bytes(examples: int, image_size: int) -> int:
    """Bytes of ``examples`` model-ready images (float32, 3 × S × S)."""
    return examples * 3 * image_size * image_size * 4


def fits_cache(examples: int, image_size: int, budget: int | None = None) -> bool:
    """Whether that many model-ready images fit the in-memory cache budget."""
    return model_bytes(examples, image_size) <= (cache_budget() if budget is None else budget)


@dataclass(frozen=True)
class Pipeline:
    """How a task's images reach ``device`` at ``image_size``: loader ``workers`` (0: in
    this process) with ``prefetch`` batches in flight; ``log`` gets its notes;
    ``on_device``: see :func:`~mutask.trainer.data.stream.resize_on_device`."""

    device: torch.device
    image_size: int
    workers: int
    prefetch: int
    task: str = "?"
    log: Log = print
    on_device: bool | None = None  # resize on the device (default: on CUDA)

    def batches(
        self, examples: Examples, batch_size: int, limit: int | None = None
    ) -> Iterator[Batch]:
        """The first ``limit`` (default all) examples in order, in batches, on the device."""
        n = len(examples) if limit is None else min(limit, len(examples))
        finish = not resize_on_device(self.device, self.on_device)
        reader = BatchReader(examples, self.image_size, None, finish=finish, task=self.task)
        plans = (
            Plan(k, torch.arange(start, min(start + batch_size, n)))
            for k, start in enumerate(range(0, n, batch_size))
        )
        seen: set[str] = set()
        loaded = load_batches(
            reader,
            plans,
            workers=min(self.workers, max(1, n // batch_size)) if self.workers else 0,
            prefetch=self.prefetch,
            pin_memory=self.device.type == "cuda",
        )
        for item in loaded:
            if isinstance(item, Failed):
                raise item.error
            note_conversions(item.converted, seen, self.log)
            x = item.x.to(self.device, non_blocking=True)
            if not finish:
                x = to_model(x, self.image_size)
            yield x, item.y.to(self.device, non_blocking=True)

    def materialize(self, examples: Examples, limit: int | None = None) -> Batch:
        """Model-ready tensors of the first ``limit`` examples (default all) on the device:
        arrays are converted directly, files are read once through the loader."""
        n = len(examples) if limit is None else min(limit, len(examples))
        memory = examples.take(slice(0, n)).in_memory
        if memory is not None:
            return prepare(memory, self.image_size, self.device)
        size = self.image_size
        x = torch.empty((n, 3, size, size), dtype=torch.float32, device=self.device)
        start = 0
        for xb, _ in self.batches(examples, _FILL_BATCH, n):
            x[start : start + xb.shape[0]] = xb
            start += xb.shape[0]
        y = torch.from_numpy(np.array(examples.labels[:n], dtype=np.int64)).to(self.device)
        return x, y


class TrainSet:
    """A task's training split: ``stream(batch_size, seed, augmenter)`` gives its batches."""

    def __init__(self, examples: Examples, pipeline: Pipeline, cached: Batch | None) -> None:
        self.examples = examples
        self.pipeline = pipeline
        self.cached = cached

    def __len__(self) -> int:
        return len(self.examples)

    def stream(self, batch_size: int, seed: int, augmenter: Augmenter | None) -> BatchStream:
        """A fresh seeded stream (every stream with the same arguments is the same)."""
        if self.cached is not None:
            return BatchStream(self.cached[0], self.cached[1], batch_size, seed, augmenter)
        p = self.pipeline
        return BatchStream.streaming(
            self.examples,
            p.image_size,
            batch_size,
            seed,
            augmenter,
            device=p.device,
            workers=p.workers,
            prefetch=p.prefetch,
            task=p.task,
            log=p.log,
            on_device=p.on_device,
        )


class EvalSet:
    """A task's validation or test split: in-order batches, or its first examples as one
    tensor pair (kept once made: validation is read every round)."""

    def __init__(self, examples: Examples, pipeline: Pipeline, cached: Batch | None) -> None:
        self.examples = examples
        self.pipeline = pipeline
        self.cached = cached
        self._made: Batch | None = None

    def __len__(self) -> int:
        return len(self.examples)

    def batches(self, batch_size: int, limit: int | None = None) -> Iterator[Batch]:
        """Every example (or the first ``limit``) once, in order, on the device."""
        if self.cached is not None:
            x, y = self.cached[0][:limit], self.cached[1][:limit]
            for start in range(0, x.shape[0], batch_size):
                yield x[start : start + batch_size], y[start : start + batch_size]
            return
        yield from self.pipeline.batches(self.examples, batch_size, limit)

    def tensors(self, limit: int | None = None) -> Batch:
        """The first ``limit`` examples (default all) as model-ready tensors on the device."""
        if self.cached is not None:
            return self.cached[0][:limit], self.cached[1][:limit]
        n = len(self) if limit is None else min(limit, len(self))
        if self._made is None or self._made[0].shape[0] < n:
            self._made = self.pipeline.materialize(self.examples, n)
        return self._made[0][:n], self._made[1][:n]


def cached_sets(
    splits: tuple[Examples, Examples, Examples],
    pipeline: Pipeline,
    cache: bool,
) -> tuple[TrainSet, EvalSet, EvalSet]:
    """The (train, validation, test) sets of a task, cached (converted now) or streamed."""
    train, validation, test = splits
    made: Callable[[Examples], Batch | None] = (
        (lambda e: pipeline.materialize(e)) if cache else (lambda e: None)
    )
    return (
        TrainSet(train, pipeline, made(train)),
        EvalSet(validation, pipeline, made(validation)),
        EvalSet(test, pipeline, made(test)),
    )
