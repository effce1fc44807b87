"""What every source's base split is: ``Records``, random access to labelled images.

A base split knows its labels up front (an int64 array, cheap) and decodes images only when
asked, a batch of rows at a time (``fetch``). In-memory arrays (``ImageSplit``), image
folders, WebDataset shards and Hugging Face datasets all implement it, so splits, label
subsets, transforms, shuffling and resuming work the same on every source. Implementations
hold no open files or connections (only names and offsets), so they can be handed to forked
loader workers; they keep their per-example tables in NumPy arrays, not Python lists, so
those workers share them instead of copying them page by page.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

# Names a source may give its base splits, and the one each becomes.
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
    "dev": "validation",
    "test": "test",
    "t10k": "test",
    "testing": "test",
}


def canonical_split(name: str) -> str:
    """The base split a source's split name stands for (``val`` -> ``validation``)."""
    return SPLIT_ALIASES.get(name.lower(), name)


class Records(Protocol):
    """One base split: labelled images with random access (see the module doc)."""

    @property
    def labels(self) -> np.ndarray:
        """int64 [N], >= 0."""
        ...

    def __len__(self) -> int: ...

    def fetch(self, rows: np.ndarray, *, task: str = "?") -> list[tuple[np.ndarray, str]]:
        """Decoded uint8 [H, W, C] images (C = 1 or 3) of ``rows``, each with the mode its
        file had (``L``/``RGB`` for in-memory arrays); bad files raise ``DatasetError``."""
        ...

    def where(self, row: int) -> str:
        """Which file (or array) holds ``row``, for messages."""
        ...
