"""An endless, seeded, reproducible stream of (augmented) training batches: ``BatchStream``.

Every epoch visits each example exactly once in a fresh random order; batches always have
``batch_size`` examples, the tail of one epoch continuing into the next (no drop-last, no
short batch). Two streams built with the same arguments yield identical batches, which is
how all candidates of a generation consume the same data.

One :class:`Planner` decides every batch in the main process (its example order and its
augmentation numbers, from two generators derived from ``seed``); where the images come
from is the only difference between the two ways a stream runs:

* **cached** (``BatchStream(images, labels, ...)``): the split's model-ready tensors are in
  memory (the small-data cache); a batch is an index into them, augmented where they live;
* **streamed** (``BatchStream.streaming(examples, ...)``): loader worker processes decode,
  collate and (on CPU hosts) resize and augment each planned batch
  (:mod:`mutask.trainer.data.loader`); on an accelerator the uint8 batch is resized and
  augmented on the device instead. Same plans, same conversion, so the same numbers.

``state_dict`` is the state after the last batch *consumed* (a streamed loader reads
ahead), so a stream restored from it continues exactly there, mid-epoch, without reading
the examples before.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from mutask.trainer.data.augment import AugmentDraws, Augmenter
from mutask.trainer.data.errors import DatasetError
from mutask.trainer.data.examples import Examples
from mutask.trainer.data.loader import BatchReader, Failed, Plan, load_batches
from mutask.trainer.data.tensors import to_model

Log = Callable[[str], None]


class Planner:
    """Example order and augmentation numbers of a stream, batch by batch."""

    def __init__(
        self, num_examples: int, batch_size: int, seed: int, augmenter: Augmenter | None
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_examples == 0:
            raise ValueError("cannot stream batches from zero examples")
        self.num_examples = num_examples
        self.batch_size = batch_size
        self.seed = seed
        self.augmenter = augmenter
        order_seed, augment_seed = (
            int(s.generate_state(1, dtype=np.uint64)[0])
            for s in np.random.SeedSequence(seed).spawn(2)
        )
        self._order_gen = torch.Generator().manual_seed(order_seed)
        self._augment_gen = torch.Generator().manual_seed(augment_seed)
        self.epoch = 0
        self.position = 0
        self.batches = 0
        self._order = torch.randperm(num_examples, generator=self._order_gen)

    def next_indices(self) -> torch.Tensor:
        """The example indices of the next batch (advances the order, draws no augmentation)."""
        parts: list[torch.Tensor] = []
        needed = self.batch_size
        while needed > 0:
            if self.position == self.num_examples:
                self.epoch += 1
                self.position = 0
                self._order = torch.randperm(self.num_examples, generator=self._order_gen)
            take = min(needed, self.num_examples - self.position)
            parts.append(self._order[self.position : self.position + take])
            self.position += take
            needed -= take
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def next(self) -> Plan:
        """The next batch's plan, carrying the state to checkpoint once it is consumed."""
        index = self.next_indices()
        draws = (
            self.augmenter.draw(index.shape[0], self._augment_gen)
            if self.augmenter is not None
            else AugmentDraws()
        )
        self.batches += 1
        return Plan(self.batches - 1, index, draws, self.state_dict(copy=False))

    def state_dict(self, copy: bool = True) -> dict[str, Any]:
        order = self._order.clone() if copy else self._order  # a new epoch makes a new tensor
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "position": self.position,
            "batches": self.batches,
            "order": order,
            "order_generator": self._order_gen.get_state(),
            "augment_generator": self._augment_gen.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        order = state["order"]
        if state["seed"] != self.seed or order.shape[0] != self.num_examples:
            raise ValueError("state is from a stream with another seed or example count")
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self.batches = int(state.get("batches", 0))
        self._order = order.clone()
        self._order_gen.set_state(state["order_generator"])
        self._augment_gen.set_state(state["augment_generator"])


class BatchStream:
    """Yields ``(x, y)`` batches forever (see the module doc); its own iterator, so
    iterating again continues where it stopped."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        seed: int,
        augmenter: Augmenter | None,
    ) -> None:
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self.planner = Planner(int(images.shape[0]), batch_size, seed, augmenter)
        self.images: torch.Tensor | None = images
        self.labels: torch.Tensor | None = labels
        self.augmenter = augmenter
        self._state: dict[str, Any] | None = None
        # the streamed way (set by ``streaming``)
        self._reader: BatchReader | None = None
        self._device = images.device
        self._workers = 0
        self._prefetch = 1
        self._log: Log = _no_log
        self._loaded: Iterator[Any] | None = None
        self._pending: deque[Plan] = deque()
        self._seen_modes: set[str] = set()

    @classmethod
    def streaming(
        cls,
        examples: Examples,
        image_size: int,
        batch_size: int,
        seed: int,
        augmenter: Augmenter | None,
        *,
        device: torch.device,
        workers: int,
        prefetch: int,
        task: str = "?",
        log: Log | None = None,
        on_device: bool | None = None,
    ) -> BatchStream:
        """A stream whose batches loader workers read from ``examples`` (see module doc);
        ``on_device`` resizes and augments them on ``device`` instead of in the workers
        (default: on CUDA devices)."""
        stream = cls.__new__(cls)
        stream.planner = Planner(len(examples), batch_size, seed, augmenter)
        stream.images = stream.labels = None
        stream.augmenter = augmenter
        stream._state = None
        finish_in_worker = not resize_on_device(device, on_device)
        stream._reader = BatchReader(
            examples, image_size, augmenter, finish=finish_in_worker, task=task
        )
        stream._device = device
        stream._workers = workers
        stream._prefetch = prefetch
        stream._log = log or _no_log
        stream._loaded = None
        stream._pending = deque()
        stream._seen_modes = set()
        return stream

    # -- what a checkpoint and the tests see ------------------------------------------------
    @property
    def seed(self) -> int:
        return self.planner.seed

    @property
    def batch_size(self) -> int:
        return self.planner.batch_size

    @property
    def num_examples(self) -> int:
        return self.planner.num_examples

    @property
    def epoch(self) -> int:
        return 0 if self._state is None else int(self._state["epoch"])

    @property
    def position(self) -> int:
        return 0 if self._state is None else int(self._state["position"])

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume the stream exactly after the last batch it yielded."""
        if self._state is None:
            fresh = Planner(self.num_examples, self.batch_size, self.seed, self.augmenter)
            return fresh.state_dict()
        state = dict(self._state)
        state["order"] = state["order"].clone()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state_dict()`` of a stream over the same examples and batch size."""
        self.planner.load_state_dict(state)
        self._state = dict(state)
        self.close()  # a streamed loader restarts from the restored plan

    # -- batches ---------------------------------------------------------------------------
    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._reader is None:
            plan = self.planner.next()
            assert self.images is not None and self.labels is not None
            index = plan.index.to(self.images.device)
            x, y = self.images[index], self.labels[index]
            if self.augmenter is not None:
                x = self.augmenter.apply(x, plan.draws)
        else:
            plan, x, y = self._next_loaded()
        self._state = plan.state
        return x, y

    def take(self, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The next ``n`` batches."""
        return [next(self) for _ in range(n)]

    def close(self) -> None:
        """Stop the loader workers (a later batch starts them again where it stopped)."""
        self._loaded = None
        self._pending.clear()

    def _next_loaded(self) -> tuple[Plan, torch.Tensor, torch.Tensor]:
        assert self._reader is not None
        if self._loaded is None:
            self._loaded = load_batches(
                self._reader,
                _plans(self.planner, self._pending),
                workers=self._workers,
                prefetch=self._prefetch,
                pin_memory=self._device.type == "cuda",
            )
        item = next(self._loaded)
        plan = self._pending.popleft()
        if isinstance(item, Failed):
            self.close()
            raise item.error
        if item.number != plan.number:  # pragma: no cover - the loader keeps order
            raise DatasetError(self._reader.task, "dataset.source", "", "batches out of order")
        self._note_conversions(item.converted)
        x = item.x.to(self._device, non_blocking=True)  # no-op on a CPU host
        y = item.y.to(self._device, non_blocking=True)
        if not self._reader.finish:
            x = to_model(x, self._reader.image_size)
            if self.augmenter is not None:
                x = self.augmenter.apply(x, plan.draws)
        return plan, x, y

    def _note_conversions(self, converted: dict[str, tuple[str, str]]) -> None:
        note_conversions(converted, self._seen_modes, self._log)


def resize_on_device(device: torch.device, choice: bool | None = None) -> bool:
    """Whether batches are resized (and augmented) on ``device`` rather than in the loader
    workers: on a CUDA device it is cheaper; on a CPU host the workers' cores do it in
    parallel, and an XLA device gets finished CPU batches of one fixed shape."""
    return device.type == "cuda" if choice is None else choice


def _plans(planner: Planner, pending: deque[Plan]) -> Iterator[Plan]:
    """The loader's sampler: every plan, noted as pending until its batch comes back. It
    holds no reference to the stream, so a dropped stream frees its loader (and stops its
    workers) at once, without waiting for the cycle collector."""
    while True:
        plan = planner.next()
        pending.append(plan)
        yield plan


def note_conversions(converted: dict[str, tuple[str, str]], seen: set[str], log: Log) -> None:
    """Log each image mode conversion once per stream (``seen`` holds the logged ones)."""
    for mode, (target, where) in converted.items():
        key = f"{mode}->{target}"
        if key not in seen:
            seen.add(key)
            log(f"data: images of mode {mode} are converted to {target} (first: {where})")


def _no_log(_line: str) -> None:
    return None
