"""In-memory image data (``ImageSplit``), the ``Source`` every loader returns, and the checks
that normalise raw arrays and labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mutask.trainer.data.errors import DatasetError
from mutask.trainer.data.records import Records, canonical_split
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

    def fetch(self, rows: np.ndarray, *, task: str = "?") -> list[tuple[np.ndarray, str]]:
        """The images of ``rows`` (views into the array; see :class:`Records`)."""
        mode = "L" if self.images.shape[-1] == 1 else "RGB"
        return [(self.images[int(r)], mode) for r in rows]

    def where(self, row: int) -> str:
        return f"example {row}"


@dataclass(frozen=True)
class Source:
    """A loaded data source: its base splits (e.g. ``train``, ``test``) and class count.

    ``name`` says which variant was loaded (``mnist`` vs ``mnist-5k``); ``origin`` says
    where from (a path, URL or package); ``kind`` what it is (``arrays``, ``folder``,
    ``shards``, ``huggingface``). ``image_shape`` is (H, W, C) of the first training image,
    and ``class_names`` the classes' names where the source has them.
    """

    name: str
    splits: dict[str, Records]
    num_classes: int
    origin: str = ""
    kind: str = "arrays"
    class_names: tuple[str, ...] = ()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the first image of ``train`` (or of the first split): one decode."""
        base = "train" if "train" in self.splits else next(iter(self.splits))
        records = self.splits[base]
        if isinstance(records, ImageSplit):
            h, w, c = records.images.shape[1:]
        else:
            h, w, c = records.fetch(np.zeros(1, dtype=np.int64))[0][0].shape
        return int(h), int(w), int(c)


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
    check_labels(labels, task=task, field=field, where=where)
    return np.ascontiguousarray(labels)


def check_labels(
    labels: np.ndarray,
    num_classes: int | None = None,
    *,
    task: str,
    field: str,
    where: str,
    name: object = None,
) -> None:
    """Every label in 0..num_classes-1 (0..MAX_CLASSES-1 when the count is not known);
    ``name(i)`` names the file of example ``i`` in the error."""
    if not labels.size:
        return
    top = MAX_CLASSES if num_classes is None else num_classes
    bad = np.flatnonzero((labels < 0) | (labels >= top))
    if not bad.size:
        return
    i = int(bad[0])
    value = int(labels[i])
    at = f" ({name(i)})" if callable(name) else ""
    if value < 0:
        raise DatasetError(task, field, where, f"label {value} is negative{at}")
    if num_classes is None:  # before anything sizes a table or a head by it
        raise DatasetError(
            task, field, where, f"label {value} is too large{at} (at most {MAX_CLASSES - 1:,})"
        )
    raise DatasetError(
        task,
        field,
        where,
        f"label {value} is out of range{at}: the source has {num_classes} classes",
    )


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

    ``num_classes`` defaults to the largest label over all splits plus one. Split names
    become their canonical base split (``val`` -> ``validation``, see ``canonical_split``).
    """
    if not splits:
        raise DatasetError(task, field, origin, "the source has no splits")
    shapes = {key: split.images.shape[1:] for key, split in splits.items()}
    if len(set(shapes.values())) > 1:
        raise DatasetError(task, field, origin, f"splits disagree on image shape: {shapes}")
    top = max_label(splits)
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
    named: dict[str, Records] = {}
    for key, split in splits.items():
        base = canonical_split(key)
        if base in named:
            raise DatasetError(
                task, field, origin, f"two splits are named {base!r} (one of them {key!r})"
            )
        named[base] = _read_only(split)
    return Source(name=name, splits=named, num_classes=num_classes, origin=origin)


def max_label(splits: dict[str, ImageSplit] | dict[str, Records]) -> int:
    """The largest label over all splits (-1 when they are all empty)."""
    return max((int(s.labels.max()) for s in splits.values() if len(s)), default=-1)


def _read_only(split: ImageSplit) -> ImageSplit:
    """Read-only views, so a cached source cannot be changed through a derived task."""
    images, labels = split.images.view(), split.labels.view()
    images.setflags(write=False)
    labels.setflags(write=False)
    return ImageSplit(images, labels)
