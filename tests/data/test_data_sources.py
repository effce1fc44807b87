"""Sources: the built-ins load here, npz/idx/file:// files load, and every bad input names
the task and field."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from data_testutil import synthetic

from mutask.trainer.data import BUILTIN_SOURCES, DatasetError, SourceCache, load_source
from mutask.trainer.data.builtin import load_fashion_mnist_source, load_mnist_source
from mutask.trainer.data.idx import read_idx, write_idx

FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_FILES = (
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
)


def test_digits(cache: SourceCache) -> None:
    src = cache.load("digits")
    assert src.name == "digits" and src.num_classes == 10
    train, test = src.splits["train"], src.splits["test"]
    assert (len(train), len(test)) == (1438, 359)
    assert train.images.shape[1:] == (8, 8, 1) and train.images.dtype == np.uint8
    assert train.labels.dtype == np.int64
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0
    # the fixed permutation is stable: same first labels every run
    again = load_source("digits")
    np.testing.assert_array_equal(again.splits["train"].labels, train.labels)
    np.testing.assert_array_equal(again.splits["test"].images, test.images)


def test_mnist(cache: SourceCache) -> None:
    src = cache.load("mnist")
    assert src.num_classes == 10
    if src.name == "mnist-5k":
        assert (len(src.splits["train"]), len(src.splits["test"])) == (4000, 1000)
    else:
        assert src.name == "mnist"
        assert (len(src.splits["train"]), len(src.splits["test"])) == (60000, 10000)
    assert src.splits["train"].images.shape[1:] == (28, 28, 1)
    assert set(np.unique(src.splits["test"].labels)) == set(range(10))


def test_mnist_prefers_an_idx_folder(idx_folder: Path) -> None:
    src = load_mnist_source(search_dirs=[idx_folder.parent / "absent", idx_folder])
    assert src.name == "mnist" and src.origin == str(idx_folder)
    assert (len(src.splits["train"]), len(src.splits["test"])) == (30, 10)


@pytest.mark.skipif(
    not all((FASHION_DIR / f).is_file() for f in FASHION_FILES),
    reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist "
    "(files expected under /usr/share/datasets/fashion-mnist/)",
)
def test_fashion_mnist_from_debian_package(cache: SourceCache) -> None:
    src = cache.load("fashion_mnist")
    assert src.name == "fashion_mnist" and src.num_classes == 10
    assert src.origin in (str(FASHION_DIR), str(Path(src.origin)))
    assert (len(src.splits["train"]), len(src.splits["test"])) == (60000, 10000)
    assert src.splits["train"].images.shape[1:] == (28, 28, 1)
    assert np.bincount(src.splits["test"].labels).tolist() == [1000] * 10


def test_builtin_names() -> None:
    assert BUILTIN_SOURCES == ("digits", "mnist", "fashion_mnist")


def test_npz_train_and_test(npz_file: Callable[..., Path]) -> None:
    xtr, ytr = synthetic(20, c=3)
    xte, yte = synthetic(8, c=3, seed=1)
    path = npz_file("toy.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    src = load_source(str(path))
    assert src.name == "toy" and sorted(src.splits) == ["test", "train"]
    np.testing.assert_array_equal(src.splits["train"].images, xtr)
    np.testing.assert_array_equal(src.splits["test"].labels, yte)
    assert src.num_classes == 4
    uri = load_source(path.as_uri())
    np.testing.assert_array_equal(uri.splits["train"].images, xtr)


def test_npz_images_labels_is_train_only(npz_file: Callable[..., Path]) -> None:
    x, y = synthetic(12)
    src = load_source(str(npz_file("flat.npz", images=x[..., 0], labels=y[:, None])))
    assert list(src.splits) == ["train"]
    assert src.splits["train"].images.shape == (12, 6, 5, 1)
    assert src.splits["train"].labels.shape == (12,)


def test_npz_floats_in_unit_range_are_scaled(npz_file: Callable[..., Path]) -> None:
    x = np.array([[[0.0, 0.5], [1.0, 0.25]]], dtype=np.float32)
    src = load_source(str(npz_file("f.npz", images=x, labels=np.array([0]))))
    assert src.splits["train"].images[0, :, :, 0].tolist() == [[0, 128], [255, 64]]


def test_source_arrays_are_read_only(npz_file: Callable[..., Path]) -> None:
    x, y = synthetic(4)
    src = load_source(str(npz_file(images=x, labels=y)))
    with pytest.raises(ValueError, match="read-only"):
        src.splits["train"].images[0, 0, 0, 0] = 1


def test_idx_folder(idx_folder: Path) -> None:
    src = load_source(str(idx_folder))
    assert src.name == "toy-idx" and src.num_classes == 3
    assert (len(src.splits["train"]), len(src.splits["test"])) == (30, 10)
    assert src.splits["train"].images.shape[1:] == (7, 7, 1)
    assert load_source(idx_folder.as_uri()).splits["test"].labels.tolist() == (
        src.splits["test"].labels.tolist()
    )


def test_idx_round_trip_plain_and_gz(tmp_path: Path) -> None:
    data = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        write_idx(tmp_path / name, data)
        np.testing.assert_array_equal(read_idx(tmp_path / name), data)


def test_cache_loads_once(npz_file: Callable[..., Path]) -> None:
    x, y = synthetic(4)
    path = npz_file(images=x, labels=y)
    cache = SourceCache()
    first = cache.load(str(path), task="t")
    path.unlink()  # a second load would fail: the cache must answer
    assert cache.load(str(path), task="t") is first
    assert str(path) in cache and len(cache) == 1
    assert load_source(str(path), cache=cache) is first


def _expect(call: Callable[[], object], field: str, text: str) -> DatasetError:
    with pytest.raises(DatasetError) as info:
        call()
    message = str(info.value)
    assert message.startswith(f"task 'tsk': {field}="), message
    assert text in message, message
    assert info.value.task == "tsk" and info.value.field == field
    return info.value


def test_unknown_builtin() -> None:
    err = _expect(lambda: load_source("cifar10", task="tsk"), "dataset.source", "unknown source")
    assert "digits" in str(err)


def test_missing_file_and_folder(tmp_path: Path) -> None:
    _expect(
        lambda: load_source(str(tmp_path / "nope.npz"), task="tsk"),
        "dataset.source",
        "no such file",
    )
    _expect(
        lambda: load_source((tmp_path / "nope").as_uri(), task="tsk"),
        "dataset.source",
        "no such file",
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    _expect(lambda: load_source(str(empty), task="tsk"), "dataset.source", "no idx files")


def test_unreadable_npz(tmp_path: Path) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip archive")
    _expect(lambda: load_source(str(bad), task="tsk"), "dataset.source", "cannot read .npz")
    npy = tmp_path / "single.npz"
    with npy.open("wb") as handle:
        np.save(handle, np.zeros(3))
    _expect(lambda: load_source(str(npy), task="tsk"), "dataset.source", "not an .npz")


def test_missing_arrays(npz_file: Callable[..., Path]) -> None:
    x, y = synthetic(4)
    only_x = npz_file("a.npz", x_train=x)
    _expect(lambda: load_source(str(only_x), task="tsk"), "dataset.source", "missing arrays")
    other = npz_file("b.npz", foo=x, bar=y)
    _expect(lambda: load_source(str(other), task="tsk"), "dataset.source", "missing arrays")


def test_shape_mismatch(npz_file: Callable[..., Path]) -> None:
    x, y = synthetic(5)
    path = npz_file(images=x, labels=y[:4])
    _expect(lambda: load_source(str(path), task="tsk"), "dataset.source", "shape mismatch")


@pytest.mark.parametrize(
    ("images", "labels", "text"),
    [
        (np.zeros((3, 4, 4, 2), np.uint8), np.zeros(3, np.int64), "C = 1 or 3"),
        (np.zeros((3, 4), np.uint8), np.zeros(3, np.int64), "expected [N, H, W]"),
        (np.full((3, 4, 4), 300, np.int32), np.zeros(3, np.int64), "expected 0..255"),
        (np.full((3, 4, 4), 2.0), np.zeros(3, np.int64), "floats must lie in [0, 1]"),
        (np.zeros((3, 4, 4), np.uint8), np.zeros(3) + 0.5, "expected integers"),
        (np.zeros((3, 4, 4), np.uint8), np.array([0, -1, 2]), "negative"),
    ],
)
def test_bad_arrays(
    npz_file: Callable[..., Path], images: np.ndarray, labels: np.ndarray, text: str
) -> None:
    path = npz_file(images=images, labels=labels)
    _expect(lambda: load_source(str(path), task="tsk"), "dataset.source", text)


def test_bad_idx(tmp_path: Path) -> None:
    folder = tmp_path / "idx"
    folder.mkdir()
    (folder / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03\x00\x00\x00\x02")
    (folder / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01\x00\x00\x00\x02\x00")
    _expect(lambda: load_source(str(folder), task="tsk"), "dataset.source", "truncated")
    (folder / "train-images-idx3-ubyte").unlink()
    _expect(lambda: load_source(str(folder), task="tsk"), "dataset.source", "no images")


def test_fashion_mnist_without_copy_or_network_names_the_fix(tmp_path: Path) -> None:
    err = _expect(
        lambda: load_fashion_mnist_source(
            task="tsk",
            search_dirs=[],
            cache_dir=tmp_path,
            mirrors=[(tmp_path / "mirror").as_uri() + "/"],
        ),
        "dataset.source",
        "dataset-fashion-mnist",
    )
    assert "download failed" in str(err)


def test_data_dir_env_is_searched_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    folder = tmp_path / "fashion-mnist"
    folder.mkdir()
    for prefix, n in (("train", 6), ("t10k", 4)):
        images, labels = synthetic(n, 28, 28, 1, classes=10)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images[..., 0])
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    monkeypatch.setenv("MUTASK_DATA_DIR", str(tmp_path))
    src = load_fashion_mnist_source(task="tsk")
    assert src.origin == str(folder) and len(src.splits["train"]) == 6


def test_dataset_error_pickles() -> None:
    err = pickle.loads(pickle.dumps(DatasetError("t", "dataset.labels", [0, 12], "why")))
    assert isinstance(err, DatasetError) and str(err) == "task 't': dataset.labels=[0, 12]: why"
    assert (err.task, err.field, err.value, err.why) == ("t", "dataset.labels", [0, 12], "why")
