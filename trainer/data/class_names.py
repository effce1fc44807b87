"""Class names of a task, where known: the built-in sources' names through the task's relabelling.

A task's class ``k`` is what :func:`~mutask.trainer.data.tasks.class_table` makes of the
source's classes: with ``labels`` it is source class ``labels[k]``; with ``label_map`` it is
every source class mapped to ``k`` (named ``"0|2|4"``); otherwise source class ``k``. Only the
built-in sources have names; any other source (an ``.npz``, a folder) gives None.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from mutask.trainer.config import DatasetConfig

_DIGITS = tuple(str(i) for i in range(10))
BUILTIN_CLASS_NAMES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "digits": _DIGITS,
        "mnist": _DIGITS,
        # the official Fashion-MNIST label names, in label order
        "fashion_mnist": (
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    }
)


def class_names(cfg: DatasetConfig | None, num_classes: int) -> list[str] | None:
    """The names of the task's ``num_classes`` classes, or None where they are not known
    (a source without names, or a config that does not describe ``num_classes`` classes)."""
    if cfg is None or cfg.source not in BUILTIN_CLASS_NAMES:
        return None
    source = BUILTIN_CLASS_NAMES[cfg.source]
    names: list[str] | None
    if cfg.labels is not None:
        names = _pick(source, cfg.labels)
    elif cfg.label_map is not None:
        names = _merge(source, cfg.label_map)
    else:
        names = list(source)
    return names if names is not None and len(names) == num_classes else None


def _pick(source: Sequence[str], labels: Sequence[int]) -> list[str] | None:
    if not all(isinstance(i, int) and 0 <= i < len(source) for i in labels):
        return None
    return [source[i] for i in labels]


def _merge(source: Sequence[str], mapping: Mapping[str, int]) -> list[str] | None:
    groups: dict[int, list[int]] = {}
    for key, target in mapping.items():
        if not str(key).isdigit() or int(key) >= len(source) or not isinstance(target, int):
            return None
        groups.setdefault(target, []).append(int(key))
    if sorted(groups) != list(range(len(groups))):
        return None
    return ["|".join(source[i] for i in sorted(groups[k])) for k in range(len(groups))]
