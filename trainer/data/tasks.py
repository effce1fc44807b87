"""Build a task's train/validation/test data from its ``DatasetConfig`` (``load_task``).

Order of operations: load the source; resolve the three split specs (``auto`` picks the
source's own ``validation`` split when it has one, see :func:`auto_splits`) and refuse any
overlap between them (validation never shares examples with test or train); select;
keep/relabel classes (``labels`` or ``label_map``); set ``transform``; truncate train to
``max_train_examples``. The splits are lazy ``Examples``: images are decoded when read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from mutask.trainer.config import DatasetConfig
from mutask.trainer.data.arrays import Source
from mutask.trainer.data.errors import DatasetError
from mutask.trainer.data.examples import TRANSFORMS, Examples
from mutask.trainer.data.sources import SourceCache, load_source
from mutask.trainer.data.splits import overlap, parse_split, resolve_split, select_split

AUTO = "auto"
_SPLIT_FIELDS = ("train", "validation", "test")


@dataclass(frozen=True)
class TaskData:
    """A task's three splits (lazy ``Examples``, labels 0..num_classes-1)."""

    name: str
    train: Examples
    validation: Examples
    test: Examples
    num_classes: int
    source_name: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(H, W, C) of the first training image (one decode)."""
        read = self.train.read(np.zeros(1, dtype=np.int64), task=self.name)
        h, w, c = read.images[0].shape
        return int(h), int(w), int(c)


VALIDATION_BASES = ("validation", "val")


def auto_splits(source: Source, specs: Mapping[str, str], task: str = "?") -> dict[str, str]:
    """``specs`` with every ``auto`` resolved: validation is the source's own validation
    split (a base split named ``validation`` or ``val``, e.g. an .npz's ``x_val``), else
    ``train[90%:]``; train is all of ``train`` when validation takes nothing from it, else
    ``train[:90%]`` beside the default ``train[90%:]`` (any other validation cut from
    ``train`` needs an explicit ``train_split``)."""
    own = next((b for b in VALIDATION_BASES if b in source.splits), None)
    resolved = dict(specs)
    if resolved.get("validation") == AUTO:
        resolved["validation"] = own or "train[90%:]"
    if resolved.get("train") == AUTO:
        validation = resolved["validation"]
        bases = {
            s.base for s in parse_split(validation, task=task, field="dataset.validation_split")
        }
        if "train" not in bases:
            resolved["train"] = "train"
        elif validation == "train[90%:]":
            resolved["train"] = "train[:90%]"
        else:
            raise DatasetError(
                task,
                "dataset.train_split",
                AUTO,
                f"dataset.validation_split={validation!r} takes examples from train: give "
                "the training examples explicitly too, e.g. train[:80%] beside train[80%:]",
            )
    return resolved


def load_task(task: str, cfg: DatasetConfig, *, cache: SourceCache | None = None) -> TaskData:
    """Load, split and derive the data of ``task`` as ``cfg`` describes."""
    if cfg.labels is not None and cfg.label_map is not None:
        raise DatasetError(
            task, "dataset.labels", cfg.labels, "use either labels or label_map, not both"
        )
    if cfg.transform is not None and cfg.transform not in TRANSFORMS:
        raise DatasetError(
            task,
            "dataset.transform",
            cfg.transform,
            f"unknown transform (known: {sorted(TRANSFORMS)})",
        )
    if cfg.max_train_examples is not None and (
        isinstance(cfg.max_train_examples, bool)
        or not isinstance(cfg.max_train_examples, int)
        or cfg.max_train_examples < 1
    ):
        raise DatasetError(
            task, "dataset.max_train_examples", cfg.max_train_examples, "must be an integer >= 1"
        )
    source = load_source(cfg.source, task=task, cache=cache)
    given = {name: getattr(cfg, f"{name}_split") for name in _SPLIT_FIELDS}
    specs = auto_splits(source, given, task)
    ranges = {
        name: resolve_split(source, spec, task, field=f"dataset.{name}_split")
        for name, spec in specs.items()
    }
    for first, second in (("validation", "test"), ("train", "test"), ("train", "validation")):
        shared = overlap(ranges[first], ranges[second])
        if shared is not None:
            base, rng = shared
            raise DatasetError(
                task,
                f"dataset.{first}_split",
                specs[first],
                f"overlaps dataset.{second}_split={specs[second]!r} on base split {base!r} "
                f"(examples {rng.start}..{rng.stop - 1}); the {first} and {second} examples "
                "must be disjoint, e.g. train[:90%] / train[90%:] / test",
            )
    lut, num_classes = class_table(task, cfg, source)
    splits: dict[str, Examples] = {}
    for name in _SPLIT_FIELDS:
        field = f"dataset.{name}_split"
        split = select_split(source, specs[name], task, field=field)
        if lut is not None:
            split = split.relabel(lut)
            if len(split) == 0:
                raise DatasetError(
                    task, field, specs[name], "no examples of the selected classes in this split"
                )
        splits[name] = split.with_transform(cfg.transform)
    if cfg.max_train_examples is not None:
        splits["train"] = splits["train"].take(slice(0, cfg.max_train_examples))
    return TaskData(
        task, splits["train"], splits["validation"], splits["test"], num_classes, source.name
    )


def class_table(task: str, cfg: DatasetConfig, source: Source) -> tuple[np.ndarray | None, int]:
    """A lookup table source class -> task class (-1 = dropped), or None, and the class count."""
    n = source.num_classes
    if cfg.labels is not None:
        labels = cfg.labels
        if not isinstance(labels, list) or not labels:
            raise DatasetError(task, "dataset.labels", labels, "must be a non-empty list")
        lut = np.full(n, -1, dtype=np.int64)
        for new, old in enumerate(labels):
            if isinstance(old, bool) or not isinstance(old, int) or not 0 <= old < n:
                raise DatasetError(
                    task,
                    "dataset.labels",
                    labels,
                    f"label {old} is out of range (source {source.name!r} has {n} classes)",
                )
            if lut[old] >= 0:
                raise DatasetError(task, "dataset.labels", labels, f"label {old} is repeated")
            lut[old] = new
        return lut, len(labels)
    if cfg.label_map is not None:
        mapping = cfg.label_map
        if not isinstance(mapping, dict) or not mapping:
            raise DatasetError(task, "dataset.label_map", mapping, "must be a non-empty object")
        lut = np.full(n, -1, dtype=np.int64)
        for key, new in mapping.items():
            try:
                old = int(key)
            except (TypeError, ValueError):
                raise DatasetError(
                    task, "dataset.label_map", mapping, f"key {key!r} is not a class number"
                ) from None
            if not 0 <= old < n:
                raise DatasetError(
                    task,
                    "dataset.label_map",
                    mapping,
                    f"label {old} is out of range (source {source.name!r} has {n} classes)",
                )
            if isinstance(new, bool) or not isinstance(new, int) or new < 0:
                raise DatasetError(
                    task,
                    "dataset.label_map",
                    mapping,
                    f"target {new!r} of class {key!r} must be an integer >= 0",
                )
            lut[old] = new
        targets = sorted(set(mapping.values()))
        if targets != list(range(len(targets))):
            missing = sorted(set(range(max(targets) + 1)) - set(targets))
            raise DatasetError(
                task,
                "dataset.label_map",
                mapping,
                f"targets must be dense 0..{max(targets)}; missing {missing}",
            )
        return lut, len(targets)
    return None, n
