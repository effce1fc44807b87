"""WebDataset shards: patterns, folders and globs, split names, the cached index, labels,
and bad shards (missing, vanishing mid-read, bad labels) named in the error."""

from __future__ import annotations

import io
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest
from data_files import encode, pixels, write_shards

from mutask.trainer.config import DatasetConfig
from mutask.trainer.data import DatasetError, load_source, load_task
from mutask.trainer.data.shards import shard_split


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUTASK_DATA_READ_RETRIES", "2")
    monkeypatch.setenv("MUTASK_DATA_READ_BACKOFF", "0.05")


def _fetch_all(records: object) -> list[np.ndarray]:
    n = len(records)  # type: ignore[arg-type]
    return [im for im, _ in records.fetch(np.arange(n))]  # type: ignore[attr-defined]


def test_brace_pattern_reads_every_sample_in_order(tmp_path: Path) -> None:
    shards, images, labels = write_shards(tmp_path / "s", "train", 25, per_shard=10)
    assert len(shards) == 3
    src = load_source(str(tmp_path / "s" / "train-{0000..0002}.tar"), cache_dir=tmp_path / "c")
    assert src.kind == "shards" and list(src.splits) == ["train"] and src.num_classes == 3
    train = src.splits["train"]
    np.testing.assert_array_equal(train.labels, labels)
    for got, want in zip(_fetch_all(train), images, strict=True):
        np.testing.assert_array_equal(got, want)
    assert train.where(12).endswith("train-0001.tar:sample000012.png")


def test_a_folder_of_shards_has_splits_from_file_names(tmp_path: Path) -> None:
    write_shards(tmp_path / "s", "train", 12, per_shard=5)
    write_shards(tmp_path / "s", "val", 4, seed=1)
    write_shards(tmp_path / "s", "test", 6, seed=2, fmt="JPEG")
    cache = tmp_path / "c"
    src = load_source(str(tmp_path / "s"), cache_dir=cache)
    assert {k: len(v) for k, v in src.splits.items()} == {"train": 12, "validation": 4, "test": 6}
    glob = load_source(str(tmp_path / "s" / "*.tar"), cache_dir=cache)
    assert {k: len(v) for k, v in glob.splits.items()} == {"train": 12, "validation": 4, "test": 6}
    data = load_task("t", DatasetConfig(source=(tmp_path / "s").as_uri()))
    assert (len(data.train), len(data.validation), len(data.test)) == (12, 4, 6)
    assert [im.shape for im in data.test.read(np.arange(6)).images] == [(12, 10, 3)] * 6


@pytest.mark.parametrize(
    ("name", "split"),
    [
        ("train-0000.tar", "train"),
        ("cifar-test-0003.tar", "test"),
        ("imagenet_val_00001.tar", "validation"),
        ("shard-000001.tar", "train"),
    ],
)
def test_shard_split_names(name: str, split: str) -> None:
    assert shard_split(f"bucket/x/{name}") == split


def test_the_index_is_cached_and_refreshed_when_a_shard_changes(tmp_path: Path) -> None:
    write_shards(tmp_path / "s", "train", 6)
    cache = tmp_path / "c"
    load_source(str(tmp_path / "s" / "train-0000.tar"), cache_dir=cache)
    (index,) = (cache / "shard-index").glob("*.npz")
    before = index.stat().st_mtime_ns
    load_source(str(tmp_path / "s" / "train-0000.tar"), cache_dir=cache)
    assert index.stat().st_mtime_ns == before  # reused, not rescanned
    write_shards(tmp_path / "s", "train", 4, seed=5)  # rewritten: new size and mtime
    src = load_source(str(tmp_path / "s" / "train-0000.tar"), cache_dir=cache)
    assert len(src.splits["train"]) == 4 and len(list((cache / "shard-index").glob("*.npz"))) == 2


def _tar(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_json_labels_are_read(tmp_path: Path) -> None:
    image = encode(pixels(1)[0])
    _tar(
        tmp_path / "j.tar",
        {"a.png": image, "a.json": b'{"label": 4}', "b.png": image, "b.json": b'{"cls": 1}'},
    )
    src = load_source(str(tmp_path / "j.tar"), cache_dir=tmp_path / "c")
    assert src.splits["train"].labels.tolist() == [4, 1] and src.num_classes == 5


@pytest.mark.parametrize(
    ("members", "text"),
    [
        ({"a.png": b"x", "a.cls": b"cat"}, "j.tar:a.cls is not an integer"),
        ({"a.png": b"x", "a.cls": b"-3"}, "label -3 in"),
        ({"a.png": b"x", "a.cls": b"1000000000"}, "out of range"),
        ({"a.png": b"x"}, "sample a in shard"),
        ({"a.cls": b"1"}, "has no image"),
    ],
)
def test_bad_samples_are_named(tmp_path: Path, members: dict[str, bytes], text: str) -> None:
    _tar(tmp_path / "j.tar", members)
    with pytest.raises(DatasetError) as info:
        load_source(str(tmp_path / "j.tar"), task="tsk", cache_dir=tmp_path / "c")
    assert str(info.value).startswith("task 'tsk': dataset.source=") and text in str(info.value)


def test_a_missing_shard_is_named(tmp_path: Path) -> None:
    write_shards(tmp_path / "s", "train", 12, per_shard=5)
    with pytest.raises(DatasetError, match=r"shard .*train-0003\.tar does not exist"):
        load_source(str(tmp_path / "s" / "train-{0000..0007}.tar"), cache_dir=tmp_path / "c")
    with pytest.raises(DatasetError, match=r"no \.tar shards match"):
        load_source(str(tmp_path / "s" / "nope-*.tar"), cache_dir=tmp_path / "c")


def test_a_truncated_shard_is_named(tmp_path: Path) -> None:
    (shard,), _, _ = write_shards(tmp_path / "s", "train", 5)
    shard.write_bytes(shard.read_bytes()[:700])
    with pytest.raises(DatasetError, match=r"train-0000\.tar"):
        load_source(str(shard), cache_dir=tmp_path / "c")


@pytest.mark.usefixtures("fast_retries")
def test_a_shard_that_disappears_mid_read_is_retried_then_named(tmp_path: Path) -> None:
    shards, images, _ = write_shards(tmp_path / "s", "train", 20, per_shard=10)
    train = load_source(str(tmp_path / "s"), cache_dir=tmp_path / "c").splits["train"]
    np.testing.assert_array_equal(train.fetch(np.array([15]))[0][0], images[15])
    saved = shards[1].read_bytes()
    shards[1].unlink()
    with pytest.raises(DatasetError) as info:
        train.fetch(np.array([3, 15]), task="tsk")
    message = str(info.value)
    assert f"cannot read shard {shards[1]} after 3 tries" in message
    assert "FileNotFoundError" in message and message.startswith("task 'tsk': dataset.source=")
    # back while the read is being retried: the read succeeds
    timer = threading.Timer(0.02, shards[1].write_bytes, args=(saved,))
    timer.start()
    try:
        np.testing.assert_array_equal(train.fetch(np.array([15]))[0][0], images[15])
    finally:
        timer.join()
