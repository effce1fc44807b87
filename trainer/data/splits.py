"""TFDS split slicing over a source's base splits: ``train``, ``train[:95%]``, ``test[10:200]``.

Grammar: parts joined by ``+``; a part is ``NAME`` or ``NAME[START:STOP]``, each bound
empty, an integer (negative counts from the end) or a percentage (``95%``, ``-5%``,
``2.5%``). Percent bounds round to the closest example like TFDS
(``round(pct * n / 100)``), so ``train[:95%]`` and ``train[95%:]`` are complementary.
Selection is deterministic: no shuffling (the sources are already in a fixed order).
Base split names are canonical (``val`` and ``valid`` mean ``validation``, ``t10k``
``test``). The selection is lazy (``Examples``): rows and labels, nothing decoded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from mutask.trainer.data.arrays import Source
from mutask.trainer.data.errors import DatasetError
from mutask.trainer.data.examples import Examples
from mutask.trainer.data.records import canonical_split

_PART = re.compile(r"^(?P<base>[A-Za-z0-9_-]+)(?:\[(?P<start>[^\]:]*):(?P<stop>[^\]:]*)\])?$")
_BOUND = re.compile(r"^(?P<num>-?\d+(?:\.\d+)?)(?P<pct>%?)$")


@dataclass(frozen=True)
class Bound:
    """One slice bound: an example count or a percentage of the base split."""

    value: float
    percent: bool

    def resolve(self, n: int) -> int:
        """The absolute index in a split of ``n`` examples, clamped to 0..n."""
        index = round(self.value * n / 100.0) if self.percent else int(self.value)
        if index < 0:
            index += n
        return min(max(index, 0), n)


@dataclass(frozen=True)
class SplitSlice:
    """One ``NAME[START:STOP]`` part of a split spec."""

    base: str
    start: Bound | None = None
    stop: Bound | None = None

    def resolve(self, n: int) -> range:
        """The example indices this slice selects from a base split of ``n`` examples."""
        start = 0 if self.start is None else self.start.resolve(n)
        stop = n if self.stop is None else self.stop.resolve(n)
        return range(start, max(start, stop))


def _parse_bound(text: str, spec: str, task: str, field: str) -> Bound | None:
    text = text.strip()
    if not text:
        return None
    match = _BOUND.match(text)
    if match is None:
        raise DatasetError(task, field, spec, f"bad slice bound {text!r}: use 10, -10, 95% or -5%")
    value = float(match["num"])
    percent = bool(match["pct"])
    if not percent and not value.is_integer():
        raise DatasetError(task, field, spec, f"bad slice bound {text!r}: counts are integers")
    if percent and not -100.0 <= value <= 100.0:
        raise DatasetError(task, field, spec, f"bad slice bound {text!r}: beyond 100%")
    return Bound(value, percent)


def parse_split(spec: str, *, task: str = "?", field: str = "split") -> tuple[SplitSlice, ...]:
    """Parse a TFDS split spec into its slices; a malformed spec raises ``DatasetError``."""
    if not isinstance(spec, str) or not spec.strip():
        raise DatasetError(
            task, field, spec, "a split spec is a non-empty string like 'train[:90%]'"
        )
    slices: list[SplitSlice] = []
    for part in spec.split("+"):
        match = _PART.match(part.strip())
        if match is None:
            raise DatasetError(
                task,
                field,
                spec,
                f"bad split {part.strip()!r}: use NAME or NAME[START:STOP], e.g. train[:95%], "
                "test[:1000], joined by '+'",
            )
        slices.append(
            SplitSlice(
                match["base"],
                _parse_bound(match["start"] or "", spec, task, field),
                _parse_bound(match["stop"] or "", spec, task, field),
            )
        )
    return tuple(slices)


def resolve_split(
    source: Source, spec: str, task: str = "?", *, field: str = "split"
) -> list[tuple[str, range]]:
    """(base split, index range) for each part of ``spec``; the bases must exist."""
    resolved: list[tuple[str, range]] = []
    for piece in parse_split(spec, task=task, field=field):
        base = canonical_split(piece.base)
        if base not in source.splits:
            raise DatasetError(
                task,
                field,
                spec,
                f"source {source.name!r} has no base split {piece.base!r} (it has "
                f"{sorted(source.splits)}); slice an existing one, e.g. train[95%:]",
            )
        resolved.append((base, piece.resolve(len(source.splits[base]))))
    return resolved


def select_split(source: Source, spec: str, task: str = "?", *, field: str = "split") -> Examples:
    """The examples ``spec`` selects, in order; an empty selection raises ``DatasetError``."""
    pieces = [
        Examples.of(source.splits[base], np.arange(rng.start, rng.stop, dtype=np.int64))
        for base, rng in resolve_split(source, spec, task, field=field)
    ]
    total = sum(len(piece) for piece in pieces)
    if total == 0:
        sizes = {base: len(split) for base, split in source.splits.items()}
        raise DatasetError(task, field, spec, f"the split is empty (base split sizes: {sizes})")
    return Examples.concat(pieces)


def overlap(a: list[tuple[str, range]], b: list[tuple[str, range]]) -> tuple[str, range] | None:
    """The first (base split, shared index range) between two resolved specs, or None."""
    for base_a, range_a in a:
        for base_b, range_b in b:
            if base_a != base_b:
                continue
            shared = range(max(range_a.start, range_b.start), min(range_a.stop, range_b.stop))
            if len(shared):
                return base_a, shared
    return None
