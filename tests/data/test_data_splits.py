"""TFDS split slicing: parsing, resolution against base splits, concatenation and errors."""

from __future__ import annotations

import numpy as np
import pytest

from mutask.trainer.data import DatasetError, ImageSplit, Source, parse_split, select_split
from mutask.trainer.data.splits import Bound, SplitSlice, overlap, resolve_split


def _source(n_train: int = 200, n_test: int = 50) -> Source:
    def split(n: int, offset: int) -> ImageSplit:
        labels = np.arange(offset, offset + n, dtype=np.int64)
        images = np.zeros((n, 2, 2, 1), dtype=np.uint8)
        return ImageSplit(images, labels)

    return Source("toy", {"train": split(n_train, 0), "test": split(n_test, 10_000)}, 20_000)


def _ids(spec: str, source: Source | None = None) -> list[int]:
    return [int(v) for v in select_split(source or _source(), spec, "tsk").labels]


def test_parse() -> None:
    assert parse_split("train") == (SplitSlice("train"),)
    assert parse_split(" test[:1000] ") == (SplitSlice("test", None, Bound(1000, False)),)
    assert parse_split("train[95%:]") == (SplitSlice("train", Bound(95, True), None),)
    assert parse_split("train[10:-5%]+test") == (
        SplitSlice("train", Bound(10, False), Bound(-5, True)),
        SplitSlice("test"),
    )


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("train", list(range(200))),
        ("train[:95%]", list(range(190))),
        ("train[95%:]", list(range(190, 200))),
        ("train[10:20]", list(range(10, 20))),
        ("train[-5:]", list(range(195, 200))),
        ("train[:-1%]", list(range(198))),
        ("train[2.5%:3%]", list(range(5, 6))),
        ("test[:10]", list(range(10_000, 10_010))),
        ("train[:1000]", list(range(200))),
        ("train[198:]+test[:2]", [198, 199, 10_000, 10_001]),
    ],
)
def test_select(spec: str, expected: list[int]) -> None:
    assert _ids(spec) == expected


def test_percent_slices_are_complementary() -> None:
    for n in (1, 7, 33, 101, 1797):
        src = _source(n, 1)
        assert len(src.splits["train"]) == n
        for pct in (1, 5, 10, 33, 50, 90, 95, 98):
            ((_, head),) = resolve_split(src, f"train[:{pct}%]", "tsk")
            ((_, tail),) = resolve_split(src, f"train[{pct}%:]", "tsk")
            assert [*head, *tail] == list(range(n))


def test_deterministic() -> None:
    assert _ids("train[10%:30%]") == _ids("train[10%:30%]")


@pytest.mark.parametrize(
    ("spec", "text"),
    [
        ("", "non-empty"),
        ("train[", "bad split"),
        ("train[1:2:3]", "bad split"),
        ("train[a:]", "bad slice bound"),
        ("train[1.5:]", "counts are integers"),
        ("train[:150%]", "beyond 100%"),
        ("train[5]", "bad split"),
        ("train+", "bad split"),
        ("validation", "no base split 'validation'"),
        ("train[10:5]", "empty"),
        ("test[100%:]", "empty"),
    ],
)
def test_errors_name_task_and_field(spec: str, text: str) -> None:
    with pytest.raises(DatasetError) as info:
        select_split(_source(), spec, "tsk", field="dataset.test_split")
    assert str(info.value).startswith(f"task 'tsk': dataset.test_split={spec!r}: ")
    assert text in str(info.value)


def test_overlap() -> None:
    src = _source()
    a = resolve_split(src, "train[:90%]", "tsk")
    b = resolve_split(src, "train[90%:]", "tsk")
    c = resolve_split(src, "train[50%:95%]+test", "tsk")
    assert overlap(a, b) is None
    assert overlap(a, c) == ("train", range(100, 180))
    assert overlap(b, c) == ("train", range(180, 190))
    assert (
        overlap(resolve_split(src, "test[:10]", "tsk"), resolve_split(src, "test[10:]", "tsk"))
        is None
    )
