"""In-memory image data: ``ImageSplit``/``Source`` and the checks that normalise raw arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mutask.trainer.data.errors import DatasetError
from mutask.trainer.limits import MAX_CLASSES


@dataclass(frozen=True)
class ImageSplit:
    """Labelled images: ``images`` uint8 [N, H, W, C] (C = 1 or 3), ``labels`` int64 [N]."""

    images: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def take(self, index: np.ndarray | slice) -> ImageSplit:
        """The examples at ``index`` (a slice or an integer/boolean index array)."""
        return ImageSplit(self.images[index], self.labels[index])


@dataclass(frozen=True)
class Source:
    """A loaded data source: its base splits (e.g. ``train``, ``test``) and class count.

    ``name`` says which variant was loaded (``mnist`` vs ``mnist-5k``); ``origin`` says
    where from (a path, URL or package).
    """

    name: str
    splits: dict[str, ImageSplit]
    num_classes: int
    origin: str = ""


def as_images(array: np.ndarray, *, task: str, field: str, where: str) -> np.ndarray:
    """Normalise an image array to uint8 [N, H, W, C] with C in {1, 3}.

    Accepts [N, H, W] (grayscale) or [N, H, W, C]; uint8, other integers in 0..255, or
    floats in [0, 1] (scaled by 255 and rounded). Anything else raises ``DatasetError``.
    """
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4 or array.shape[-1] not in (1, 3):
        raise DatasetError(
            task,
            field,
            where,
            f"images have shape {tuple(array.shape)}; expected [N, H, W] or [N, H, W, C] "
            "with C = 1 or 3 (channels last)",
        )
    if array.shape[0] == 0 or array.shape[1] == 0 or array.shape[2] == 0:
        raise DatasetError(task, field, where, f"images have empty shape {tuple(array.shape)}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if np.issubdtype(array.dtype, np.integer):
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise DatasetError(
                task, field, where, f"integer pixel values span {low}..{high}; expected 0..255"
            )
        return np.ascontiguousarray(array.astype(np.uint8))
    if np.issubdtype(array.dtype, np.floating):
        low_f, high_f = float(array.min()), float(array.max())
        if not (np.isfinite(low_f) and np.isfinite(high_f)) or low_f < 0.0 or high_f > 1.0:
            raise DatasetError(
                task,
                field,
                where,
                f"float pixel values span {low_f}..{high_f}; floats must lie in [0, 1] "
                "(store 0..255 data as uint8)",
            )
        return np.ascontiguousarray(np.rint(array * 255.0).astype(np.uint8))
    raise DatasetError(task, field, where, f"images have unsupported dtype {array.dtype}")


def as_labels(array: np.ndarray, count: int, *, task: str, field: str, where: str) -> np.ndarray:
    """Normalise a label array to int64 [N] (accepting [N, 1]); labels must be >= 0."""
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise DatasetError(
            task, field, where, f"labels have shape {tuple(array.shape)}; expected [N]"
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise DatasetError(
            task, field, where, f"labels have dtype {array.dtype}; expected integers"
        )
    if array.shape[0] != count:
        raise DatasetError(
            task,
            field,
            where,
            f"shape mismatch: {count} images but {array.shape[0]} labels",
        )
    labels = array.astype(np.int64)
    if labels.size and int(labels.min()) < 0:
        raise DatasetError(task, field, where, f"label {int(labels.min())} is negative")
    return np.ascontiguousarray(labels)


def make_split(
    images: np.ndarray, labels: np.ndarray, *, task: str, field: str, where: str
) -> ImageSplit:
    """Check and normalise one (images, labels) pair into an ``ImageSplit``."""
    imgs = as_images(np.asarray(images), task=task, field=field, where=where)
    return ImageSplit(
        imgs, as_labels(np.asarray(labels), imgs.shape[0], task=task, field=field, where=where)
    )


def make_source(
    name: str,
    splits: dict[str, ImageSplit],
    *,
    task: str,
    field: str,
    origin: str,
    num_classes: int | None = None,
) -> Source:
    """Build a ``Source``; check image sizes agree and labels fit ``num_classes``.

    ``num_classes`` defaults to the largest label over all splits plus one.
    """
    if not splits:
        raise DatasetError(task, field, origin, "the source has no splits")
    shapes = {key: split.images.shape[1:] for key, split in splits.items()}
    if len(set(shapes.values())) > 1:
        raise DatasetError(task, field, origin, f"splits disagree on image shape: {shapes}")
    top = max((int(s.labels.max()) for s in splits.values() if len(s)), default=-1)
    if top >= MAX_CLASSES:  # before anything sizes a table or a head by it
        raise DatasetError(
            task, field, origin, f"label {top} is too large (at most {MAX_CLASSES - 1:,})"
        )
    if num_classes is None:
        num_classes = top + 1
    if num_classes < 1:
        raise DatasetError(task, field, origin, "the source has no labelled examples")
    if top >= num_classes:
        raise DatasetError(
            task,
            field,
            origin,
            f"label {top} is out of range (source {name!r} has {num_classes} classes)",
        )
    return Source(
        name=name,
        splits={k: _read_only(v) for k, v in splits.items()},
        num_classes=num_classes,
        origin=origin,
    )


def _read_only(split: ImageSplit) -> ImageSplit:
    """Read-only views, so a cached source cannot be changed through a derived task."""
    images, labels = split.images.view(), split.labels.view()
    images.setflags(write=False)
    labels.setflags(write=False)
    return ImageSplit(images, labels)
