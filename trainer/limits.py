"""The bounds every trainer input must respect, checked before anything runs.

:meth:`mutask.trainer.config.IntroduceConfig.validate` applies them (so a config file, the
CLI flags and the operator's ConfigMap all meet them); the CRDs (``manifests/crds/``) carry the
same numbers as schema bounds and CEL rules, so the apiserver refuses what the trainer would
(``tests/operator/test_op_crd_limits.py`` checks that they agree). Each check raises
:class:`~mutask.trainer.errors.ConfigError` naming the dotted field and the value. What needs
the data itself (labels against the source's classes, a dataset with fewer than two classes,
the memory a run needs) is checked by the run's preflight
(:mod:`mutask.trainer.iteration.preflight`). Pure: no torch, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mutask.trainer.errors import ConfigError

MAX_CLASSES = 32_768  # a task's classes (the head's width); also the largest label + 1
BUDGET_MAX: Mapping[str, int] = {
    "generations": 1000,
    "candidates": 256,
    "validation_rounds": 100,
    "steps_per_round": 1_000_000,
    "batch_size": 65_536,
    "max_validation_examples": 10_000_000,
}
SEED_MAX = 2**31 - 1
IMAGE_SIZE_MIN, IMAGE_SIZE_MAX = 4, 1024  # or 0: the bootstrap data's own size
EPOCHS_MAX = 1000.0  # budget.epochs and model.max_epochs
POPULATION_CAP_MAX = 1024
WORKERS_MAX = 1024
MAX_TRAIN_EXAMPLES_MAX = 1_000_000_000
TRANSFORMS = ("rot90", "rot180", "flip_lr", "flip_ud", "transpose", "invert")
BUILTIN_SOURCES = ("digits", "mnist", "fashion_mnist")
BUILTIN_CLASSES = 10  # every built-in source has ten classes
DATASET_SCHEMES = ("file", "gs")  # besides built-in names and plain paths
# What a dataset source may look like (also the CRDs' dataset.uri pattern): a built-in name or
# a path (no ':'; image folders, .npz, idx folders, shard brace patterns or globs, Parquet
# files, saved Hugging Face datasets), file:///PATH, or gs://BUCKET/PATH (a bucket name as
# GCS allows it, then an object, folder, brace pattern or glob).
DATASET_URI_PATTERN = r"^(gs://[a-z0-9][a-z0-9._-]{1,221}[a-z0-9]/.+|file:///.+|[^:]+)$"
PRESET = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

# TFDS split slices (see mutask.trainer.data.splits): NAME or NAME[START:STOP] joined by '+';
# a bound is an integer count or a percentage in [-100, 100]. SPLIT_PATTERN (no spaces) is
# also the CRDs' pattern; the trainer allows spaces around the parts.
_NAME = r"[A-Za-z0-9_-]+"
_BOUND = r"-?(?:[0-9]+|(?:100(?:\.0+)?|[0-9]{1,2}(?:\.[0-9]+)?)%)"
_PART = rf"{_NAME}(?:\[(?:{_BOUND})?:(?:{_BOUND})?\])?"
SPLIT_PATTERN = rf"^{_PART}(?:\+{_PART})*$"
_SPACED_PART = rf"\s*{_NAME}(?:\[\s*(?:{_BOUND})?\s*:\s*(?:{_BOUND})?\s*\])?\s*"
_SPLIT = re.compile(rf"^{_SPACED_PART}(?:\+{_SPACED_PART})*$")


def check_int(field: str, value: Any, low: int, high: int) -> int:
    """``value`` is an integer (not a bool) in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(field, value, "must be an integer")
    if not low <= value <= high:
        raise ConfigError(field, value, f"must be an integer in {low}..{high:,}")
    return value


def check_number(field: str, value: Any, high: float) -> float:
    """``value`` is a number (not a bool) in (0, high]."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= high:
        raise ConfigError(field, value, f"must be a number in (0, {high:g}]")
    return float(value)


def check_budget(budget: Any) -> None:
    for name, high in BUDGET_MAX.items():
        low = 0 if name == "steps_per_round" else 1  # 0: derived from epochs and the data
        check_int(f"budget.{name}", getattr(budget, name), low, high)
    check_number("budget.epochs", budget.epochs, EPOCHS_MAX)
    for name in ("halving", "final_training"):
        if not isinstance(getattr(budget, name), bool):
            raise ConfigError(f"budget.{name}", getattr(budget, name), "must be true or false")


def check_split(field: str, spec: Any) -> None:
    if not isinstance(spec, str) or not _SPLIT.match(spec):
        raise ConfigError(
            field,
            spec,
            "a split is NAME or NAME[START:STOP] (counts, or percentages within 100%), "
            "joined by '+', e.g. train[:90%] or test[:1000]",
        )


def check_source(field: str, source: Any) -> None:
    if not isinstance(source, str) or not source.strip():
        raise ConfigError(field, source, "must be a built-in name, a path or a URI")
    match = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://", source)
    if match and match.group(1) not in DATASET_SCHEMES:
        raise ConfigError(
            field,
            source,
            f"unsupported scheme {match.group(1)!r}: use a built-in name "
            f"({', '.join(BUILTIN_SOURCES)}), a path, file:// or gs://",
        )
    if not re.match(DATASET_URI_PATTERN, source):
        raise ConfigError(
            field,
            source,
            "expected a built-in name, a path (without ':'), file:///PATH or gs://BUCKET/PATH",
        )


def check_labels(dataset: Any) -> None:
    """``labels`` / ``label_map`` on their own: at least two classes, in range, no repeats."""
    labels, label_map = dataset.labels, dataset.label_map
    if labels is not None and label_map is not None:
        raise ConfigError("dataset.labels", labels, "use either labels or label_map, not both")
    builtin = dataset.source in BUILTIN_SOURCES
    top = BUILTIN_CLASSES if builtin else MAX_CLASSES
    where = f"source {dataset.source!r} has {top} classes" if builtin else f"at most {top:,}"
    if labels is not None:
        if not isinstance(labels, list) or len(labels) < 2:
            raise ConfigError(
                "dataset.labels", labels, "a task needs at least two classes: list two or more"
            )
        for label in labels:
            if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < top:
                why = f"label {label!r} out of range ({where})"
                raise ConfigError("dataset.labels", labels, why)
        if len(set(labels)) != len(labels):
            repeated = sorted({x for x in labels if labels.count(x) > 1})
            raise ConfigError("dataset.labels", labels, f"labels repeated: {repeated}")
    if label_map is not None:
        _check_label_map(label_map, top, where)


def _check_label_map(mapping: Any, top: int, where: str) -> None:
    field = "dataset.label_map"
    if not isinstance(mapping, dict) or not mapping:
        raise ConfigError(field, mapping, "must be a non-empty object {source label: task label}")
    for key, target in mapping.items():
        if not isinstance(key, str) or not re.match(r"^[0-9]{1,5}$", key) or int(key) >= top:
            raise ConfigError(field, mapping, f"key {key!r} is not a source label ({where})")
        if isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < MAX_CLASSES:
            raise ConfigError(field, mapping, f"target {target!r} of {key!r} is not a class 0..")
    targets = sorted(set(mapping.values()))
    if targets != list(range(len(targets))):
        missing = sorted(set(range(max(targets) + 1)) - set(targets))
        why = f"targets must be dense 0..{max(targets)}; missing {missing}"
        raise ConfigError(field, mapping, why)
    if len(targets) < 2:
        raise ConfigError(field, mapping, "a task needs at least two classes (targets 0 and 1)")


def check_dataset(dataset: Any) -> None:
    check_source("dataset.source", dataset.source)
    for name in ("train", "validation", "test"):
        check_split(f"dataset.{name}_split", getattr(dataset, f"{name}_split"))
    check_labels(dataset)
    if dataset.transform is not None and dataset.transform not in TRANSFORMS:
        why = f"unknown transform (known: {', '.join(TRANSFORMS)})"
        raise ConfigError("dataset.transform", dataset.transform, why)
    if dataset.max_train_examples is not None:
        limit = MAX_TRAIN_EXAMPLES_MAX
        check_int("dataset.max_train_examples", dataset.max_train_examples, 1, limit)


def check_model(model: Any) -> None:
    if not isinstance(model.preset, str) or not PRESET.match(model.preset):
        raise ConfigError("model.preset", model.preset, "a preset name is [a-z0-9-], e.g. mu-tiny")
    if model.image_size != 0 or isinstance(model.image_size, bool):
        check_int("model.image_size", model.image_size, IMAGE_SIZE_MIN, IMAGE_SIZE_MAX)
    check_number("model.max_epochs", model.max_epochs, EPOCHS_MAX)
    weights = model.weights
    if weights is not None and (not isinstance(weights, str) or not weights.strip()):
        raise ConfigError("model.weights", model.weights, "a path or URI, or null")
