"""An endless, seeded, reproducible stream of (augmented) training batches: ``BatchStream``.

Every epoch visits each example exactly once in a fresh random order; batches always have
``batch_size`` examples, the tail of one epoch continuing into the next (no drop-last, no
short batch). Two streams built with the same arguments yield identical batches, which is
how all candidates of a generation consume the same data.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from mutask.trainer.data.augment import Augmenter


class BatchStream:
    """Yields ``(x, y)`` batches forever on the images' device (see module doc).

    The stream is its own iterator: iterating again continues where it stopped. Example
    order and augmentation use two generators derived from ``seed``.
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        seed: int,
        augmenter: Augmenter | None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        if images.shape[0] == 0:
            raise ValueError("cannot stream batches from zero examples")
        self.images = images
        self.labels = labels
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
        self._order = self._new_order()

    @property
    def num_examples(self) -> int:
        return int(self.images.shape[0])

    def _new_order(self) -> torch.Tensor:
        return torch.randperm(self.num_examples, generator=self._order_gen)

    def next_indices(self) -> torch.Tensor:
        """The example indices of the next batch (advances the stream, no augmentation)."""
        parts: list[torch.Tensor] = []
        needed = self.batch_size
        while needed > 0:
            if self.position == self.num_examples:
                self.epoch += 1
                self.position = 0
                self._order = self._new_order()
            take = min(needed, self.num_examples - self.position)
            parts.append(self._order[self.position : self.position + take])
            self.position += take
            needed -= take
        return parts[0] if len(parts) == 1 else torch.cat(parts)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        index = self.next_indices().to(self.images.device)
        x, y = self.images[index], self.labels[index]
        if self.augmenter is not None:
            x = self.augmenter(x, self._augment_gen)
        return x, y

    def take(self, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The next ``n`` batches."""
        return [next(self) for _ in range(n)]

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume the stream exactly (see ``load_state_dict``)."""
        return {
            "seed": self.seed,
            "epoch": self.epoch,
            "position": self.position,
            "order": self._order.clone(),
            "order_generator": self._order_gen.get_state(),
            "augment_generator": self._augment_gen.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume from ``state_dict()`` of a stream over the same examples and batch size."""
        order = state["order"]
        if state["seed"] != self.seed or order.shape[0] != self.num_examples:
            raise ValueError("state is from a stream with another seed or example count")
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._order = order.clone()
        self._order_gen.set_state(state["order_generator"])
        self._augment_gen.set_state(state["augment_generator"])
