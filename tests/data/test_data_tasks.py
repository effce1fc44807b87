"""load_task: split wiring, derived tasks (subset, relabel, transform, truncation),
validation/test overlap refusal, and errors naming task and field."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from data_testutil import synthetic

from mutask.trainer.config import DatasetConfig
from mutask.trainer.data import TRANSFORMS, DatasetError, SourceCache, load_task


@pytest.fixture
def toy(npz_file: Callable[..., Path]) -> str:
    """An npz source: 100 train / 40 test 6×5 gray images, labels cycling 0..3."""
    xtr, ytr = synthetic(100, classes=4)
    xte, yte = synthetic(40, classes=4, seed=1)
    return str(npz_file("toy.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte))


def test_default_splits_on_digits(cache: SourceCache) -> None:
    data = load_task("digits", DatasetConfig(), cache=cache)
    assert data.name == "digits" and data.source_name == "digits" and data.num_classes == 10
    train = cache.load("digits").splits["train"]
    assert len(data.train) + len(data.validation) == len(train)
    np.testing.assert_array_equal(data.validation.labels, train.labels[len(data.train) :])
    assert len(data.test) == len(cache.load("digits").splits["test"])
    assert data.image_shape == (8, 8, 1)


@pytest.mark.parametrize("key", ["val", "validation"])
def test_auto_splits_use_the_sources_own_validation_split(
    npz_file: Callable[..., Path], key: str
) -> None:
    xtr, ytr = synthetic(100, classes=4)
    xva, yva = synthetic(30, classes=4, seed=2)
    xte, yte = synthetic(40, classes=4, seed=1)
    arrays = {"x_train": xtr, "y_train": ytr, f"x_{key}": xva, f"y_{key}": yva}
    path = npz_file("own.npz", **arrays, x_test=xte, y_test=yte)
    data = load_task("own", DatasetConfig(source=str(path)))
    np.testing.assert_array_equal(data.validation.images, xva)
    np.testing.assert_array_equal(data.train.labels, ytr)  # all of train trains
    # an explicit split still wins over the source's own
    cut = load_task("cut", DatasetConfig(source=str(path), validation_split="train[90%:]"))
    assert len(cut.validation) == 10 and len(cut.train) == 90
    with pytest.raises(DatasetError, match=r"dataset\.train_split"):
        load_task("odd", DatasetConfig(source=str(path), validation_split="train[:5]"))


def test_auto_splits_cut_validation_from_train_without_one(toy: str) -> None:
    auto = load_task("a", DatasetConfig(source=toy))
    explicit = load_task(
        "e", DatasetConfig(source=toy, train_split="train[:90%]", validation_split="train[90%:]")
    )
    np.testing.assert_array_equal(auto.validation.labels, explicit.validation.labels)
    np.testing.assert_array_equal(auto.train.labels, explicit.train.labels)


def test_labels_subset_relabels_in_given_order(toy: str) -> None:
    data = load_task("sub", DatasetConfig(source=toy, labels=[3, 1]))
    assert data.num_classes == 2
    full = load_task("full", DatasetConfig(source=toy))
    for name in ("train", "validation", "test"):
        derived, base = getattr(data, name), getattr(full, name)
        keep = np.isin(base.labels, [3, 1])
        np.testing.assert_array_equal(derived.images, base.images[keep])
        np.testing.assert_array_equal(derived.labels, np.where(base.labels[keep] == 3, 0, 1))


def test_label_map_merges_and_drops(toy: str) -> None:
    data = load_task("merge", DatasetConfig(source=toy, label_map={"0": 1, "1": 0, "3": 1}))
    full = load_task("full", DatasetConfig(source=toy))
    assert data.num_classes == 2
    keep = full.train.labels != 2
    np.testing.assert_array_equal(data.train.images, full.train.images[keep])
    np.testing.assert_array_equal(
        data.train.labels, [{0: 1, 1: 0, 3: 1}[int(v)] for v in full.train.labels[keep]]
    )


@pytest.mark.parametrize("name", sorted(TRANSFORMS))
def test_transforms(toy: str, name: str) -> None:
    full = load_task("full", DatasetConfig(source=toy))
    data = load_task("t", DatasetConfig(source=toy, transform=name))
    x = full.test.images
    expected = {
        "rot90": np.stack([np.rot90(im) for im in x]),
        "rot180": x[:, ::-1, ::-1],
        "flip_lr": x[:, :, ::-1],
        "flip_ud": x[:, ::-1, :],
        "transpose": x.transpose(0, 2, 1, 3),
        "invert": 255 - x,
    }[name]
    for split in (data.train, data.validation, data.test):
        assert split.images.flags.c_contiguous
    np.testing.assert_array_equal(data.test.images, expected)
    np.testing.assert_array_equal(data.test.labels, full.test.labels)


def test_max_train_examples(toy: str) -> None:
    data = load_task("t", DatasetConfig(source=toy, labels=[2], max_train_examples=5))
    assert len(data.train) == 5 and set(data.train.labels.tolist()) == {0}
    assert len(data.validation) == 3  # untouched: train[90%:] = 90..99 holds 3 of class 2


def test_validation_may_slice_test_when_disjoint(toy: str) -> None:
    cfg = DatasetConfig(
        source=toy, train_split="train", validation_split="test[:10]", test_split="test[10:]"
    )
    data = load_task("t", cfg)
    assert (len(data.train), len(data.validation), len(data.test)) == (100, 10, 30)


@pytest.mark.parametrize(
    ("splits", "field", "other"),
    [
        (("train[:90%]", "test", "test"), "dataset.validation_split", "dataset.test_split"),
        (
            ("train[:90%]", "test[:20]", "test[10:]"),
            "dataset.validation_split",
            "dataset.test_split",
        ),
        (("train+test[:1]", "train[90%:]", "test"), "dataset.train_split", "dataset.test_split"),
        (("train", "train[90%:]", "test"), "dataset.train_split", "dataset.validation_split"),
    ],
)
def test_overlapping_splits_are_refused(
    toy: str, splits: tuple[str, str, str], field: str, other: str
) -> None:
    train, validation, test = splits
    cfg = DatasetConfig(source=toy, train_split=train, validation_split=validation, test_split=test)
    with pytest.raises(DatasetError) as info:
        load_task("tsk", cfg)
    assert str(info.value).startswith(f"task 'tsk': {field}=")
    assert f"overlaps {other}=" in str(info.value)


def test_label_error_message_format(cache: SourceCache) -> None:
    with pytest.raises(DatasetError) as info:
        load_task("mnist-even", DatasetConfig(source="digits", labels=[0, 12]), cache=cache)
    assert str(info.value) == (
        "task 'mnist-even': dataset.labels=[0, 12]: label 12 is out of range "
        "(source 'digits' has 10 classes)"
    )


@pytest.mark.parametrize(
    ("changes", "field", "text"),
    [
        ({"source": "nope"}, "dataset.source", "unknown source"),
        ({"source": "/nonexistent/x.npz"}, "dataset.source", "no such file"),
        ({"labels": [0, 9]}, "dataset.labels", "label 9 is out of range"),
        ({"labels": [0, 0]}, "dataset.labels", "repeated"),
        ({"labels": []}, "dataset.labels", "non-empty"),
        ({"labels": [0], "label_map": {"0": 0}}, "dataset.labels", "not both"),
        ({"label_map": {"0": 0, "1": 2}}, "dataset.label_map", "dense"),
        ({"label_map": {"x": 0}}, "dataset.label_map", "not a class number"),
        ({"label_map": {"7": 0}}, "dataset.label_map", "out of range"),
        ({"label_map": {"0": -1}}, "dataset.label_map", ">= 0"),
        ({"transform": "rot45"}, "dataset.transform", "unknown transform"),
        ({"max_train_examples": 0}, "dataset.max_train_examples", ">= 1"),
        ({"train_split": "train[:0]"}, "dataset.train_split", "empty"),
        ({"validation_split": "dev"}, "dataset.validation_split", "no base split 'dev'"),
        ({"test_split": "test[:"}, "dataset.test_split", "bad split"),
        ({"test_split": "test[:3]", "labels": [3]}, "dataset.test_split", "no examples"),
    ],
)
def test_errors_name_task_and_field(
    toy: str, changes: dict[str, object], field: str, text: str
) -> None:
    kwargs: dict[str, object] = {"source": toy, **changes}
    with pytest.raises(DatasetError) as info:
        load_task("tsk", DatasetConfig(**kwargs))  # type: ignore[arg-type]
    assert str(info.value).startswith(f"task 'tsk': {field}="), str(info.value)
    assert text in str(info.value), str(info.value)
