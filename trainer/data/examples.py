"""A task's split as a lazy selection of a source's examples: ``Examples``.

A split spec (``train[:90%]+test[:10]``), a label subset or map and ``max_train_examples``
only choose rows and labels; nothing is decoded until a batch is read (``read``), and the
task's ``transform`` is applied to each image as it is read. ``images`` materialises the
whole selection (for small data and tests). Index tables are NumPy arrays, so a split of a
million examples costs about 17 MB and forks into loader workers for free.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np

from mutask.trainer.data.arrays import ImageSplit
from mutask.trainer.data.records import Records

TRANSFORMS: Mapping[str, Callable[[np.ndarray], np.ndarray]] = MappingProxyType(
    {
        "rot90": lambda x: np.rot90(x, k=1, axes=(1, 2)),
        "rot180": lambda x: np.rot90(x, k=2, axes=(1, 2)),
        "flip_lr": lambda x: x[:, :, ::-1],
        "flip_ud": lambda x: x[:, ::-1],
        "transpose": lambda x: np.swapaxes(x, 1, 2),
        "invert": lambda x: 255 - x,
    }
)


@dataclass(frozen=True)
class Read:
    """One read batch: uint8 [H, W, C] images (sizes may differ), int64 labels, and the
    image modes their files had (mode -> first file with it)."""

    images: list[np.ndarray]
    labels: np.ndarray
    modes: dict[str, str]


@dataclass(frozen=True, eq=False)
class Examples:
    """Rows ``row[i]`` of base split ``parts[part[i]]``, labelled ``labels[i]`` (see module)."""

    parts: tuple[Records, ...]
    part: np.ndarray
    row: np.ndarray
    labels: np.ndarray
    transform: str | None = None

    @classmethod
    def of(cls, records: Records, rows: np.ndarray | None = None) -> Examples:
        """Rows ``rows`` (default all) of one base split, with their own labels."""
        index = np.arange(len(records), dtype=np.int64) if rows is None else rows
        return cls(
            (records,),
            np.zeros(index.shape[0], dtype=np.int16),
            index.astype(np.int64),
            np.asarray(records.labels)[index],
        )

    @classmethod
    def concat(cls, pieces: Sequence[Examples]) -> Examples:
        """The pieces one after the other (each with a single part)."""
        if len(pieces) == 1:
            return pieces[0]
        parts = tuple(p.parts[0] for p in pieces)
        return cls(
            parts,
            np.concatenate([np.full(len(p), k, dtype=np.int16) for k, p in enumerate(pieces)]),
            np.concatenate([p.row for p in pieces]),
            np.concatenate([p.labels for p in pieces]),
            pieces[0].transform,
        )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, index: np.ndarray | slice) -> Examples:
        """The examples at ``index`` (a slice, integer or boolean index array)."""
        return Examples(
            self.parts, self.part[index], self.row[index], self.labels[index], self.transform
        )

    def relabel(self, lut: np.ndarray) -> Examples:
        """Keep the examples whose label maps to >= 0 in ``lut`` and give them that label."""
        new = lut[self.labels]
        keep = new >= 0
        kept = self.take(keep)
        return Examples(kept.parts, kept.part, kept.row, new[keep], self.transform)

    def with_transform(self, name: str | None) -> Examples:
        return Examples(self.parts, self.part, self.row, self.labels, name)

    def where(self, position: int) -> str:
        """Which file holds example ``position``."""
        return self.parts[int(self.part[position])].where(int(self.row[position]))

    def read(self, positions: np.ndarray, *, task: str = "?") -> Read:
        """Decode the examples at ``positions`` (in that order), transformed."""
        positions = np.asarray(positions, dtype=np.int64)
        images: list[np.ndarray | None] = [None] * positions.shape[0]
        modes: dict[str, str] = {}
        parts = self.part[positions]
        for k in np.unique(parts):
            at = np.flatnonzero(parts == k)
            records = self.parts[int(k)]
            rows = self.row[positions[at]]
            fetched = records.fetch(rows, task=task)
            for n, (j, (image, mode)) in enumerate(zip(at, fetched, strict=True)):
                if mode not in modes:
                    modes[mode] = records.where(int(rows[n]))
                images[int(j)] = self._transformed(image)
        return Read([im for im in images if im is not None], self.labels[positions], modes)

    def _transformed(self, image: np.ndarray) -> np.ndarray:
        if self.transform is None:
            return image
        return np.ascontiguousarray(TRANSFORMS[self.transform](image[None])[0])

    @property
    def in_memory(self) -> ImageSplit | None:
        """The whole selection as arrays without decoding, when every part is an array."""
        if not all(isinstance(p, ImageSplit) for p in self.parts):
            return None
        arrays = [p.images for p in self.parts if isinstance(p, ImageSplit)]
        if len({a.shape[1:] for a in arrays}) > 1:
            return None
        if len(arrays) == 1:
            images = arrays[0][self.row]
        else:
            images = np.empty((len(self), *arrays[0].shape[1:]), dtype=np.uint8)
            for k, array in enumerate(arrays):
                mask = self.part == k
                images[mask] = array[self.row[mask]]
        if self.transform is not None:
            images = np.ascontiguousarray(TRANSFORMS[self.transform](images))
        return ImageSplit(images, self.labels)

    @property
    def images(self) -> np.ndarray:
        """Every image as one uint8 [N, H, W, C] array (they must share a shape)."""
        memory = self.in_memory
        if memory is not None:
            return memory.images
        read = self.read(np.arange(len(self)))
        return np.stack(read.images) if read.images else np.zeros((0, 1, 1, 1), np.uint8)
