"""Hugging Face datasets: save_to_disk folders (DatasetDict or one Dataset), Parquet files
and folders, ClassLabel names and counts, array image columns, and bad labels named."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_files import CLASSES, pixels, write_hf

from mutask.trainer.config import DatasetConfig
from mutask.trainer.data import DatasetError, load_source, load_task

pytest.importorskip("datasets", reason="Hugging Face datasets is a trainer dependency")


def _check(src: object, arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    splits = src.splits  # type: ignore[attr-defined]
    assert {k: len(v) for k, v in splits.items()} == {
        "validation" if k == "valid" else k: len(y) for k, (_, y) in arrays.items()
    }
    for name, (images, labels) in arrays.items():
        records = splits["validation" if name == "valid" else name]
        np.testing.assert_array_equal(records.labels, labels)
        got = [im for im, _ in records.fetch(np.arange(len(labels))[::-1])]
        for a, b in zip(got, images[::-1], strict=True):
            np.testing.assert_array_equal(a, b)


def test_save_to_disk_dataset_dict(tmp_path: Path) -> None:
    arrays = write_hf(tmp_path / "hf", {"train": 9, "valid": 3, "test": 4})
    src = load_source(str(tmp_path / "hf"), cache_dir=tmp_path / "c")
    assert src.kind == "huggingface" and src.class_names == CLASSES and src.num_classes == 3
    _check(src, arrays)
    data = load_task("t", DatasetConfig(source=str(tmp_path / "hf")))  # auto: its valid split
    assert (len(data.train), len(data.validation), len(data.test)) == (9, 3, 4)


def test_one_saved_dataset_is_train(tmp_path: Path) -> None:
    from datasets import load_from_disk

    write_hf(tmp_path / "hf", {"train": 6})
    load_from_disk(str(tmp_path / "hf"))["train"].save_to_disk(str(tmp_path / "one"))
    src = load_source(str(tmp_path / "one"), cache_dir=tmp_path / "c")
    assert list(src.splits) == ["train"] and len(src.splits["train"]) == 6


def test_parquet_folder_and_file(tmp_path: Path) -> None:
    arrays = write_hf(tmp_path / "pq", {"train": 8, "test": 5}, parquet=True)
    src = load_source(str(tmp_path / "pq"), cache_dir=tmp_path / "c")
    assert src.class_names == CLASSES
    _check(src, arrays)
    one = load_source(
        str(tmp_path / "pq" / "data" / "test-00000-of-00001.parquet"), cache_dir=tmp_path / "c"
    )
    assert list(one.splits) == ["train"] and len(one.splits["train"]) == 5


def test_array_image_columns(tmp_path: Path) -> None:
    from datasets import Array3D, Dataset, Features, Value

    images = pixels(5, 4, 6)
    features = Features({"img": Array3D((4, 6, 3), "uint8"), "target": Value("int64")})
    Dataset.from_dict(
        {"img": list(images), "target": [0, 1, 1, 0, 3]}, features=features
    ).save_to_disk(str(tmp_path / "arr"))
    src = load_source(str(tmp_path / "arr"), cache_dir=tmp_path / "c")
    assert src.num_classes == 4 and src.class_names == ()
    _check(src, {"train": (images, np.array([0, 1, 1, 0, 3]))})


def test_unlabelled_rows_are_named(tmp_path: Path) -> None:
    write_hf(tmp_path / "hf", {"train": 4, "test": 3}, labels={"test": [0, -1, 2]})
    with pytest.raises(DatasetError) as info:
        load_source(str(tmp_path / "hf"), task="tsk", cache_dir=tmp_path / "c")
    assert "label -1 is negative" in str(info.value) and "test row 1" in str(info.value)


def test_missing_columns_are_named(tmp_path: Path) -> None:
    from datasets import Dataset

    Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]}).save_to_disk(str(tmp_path / "t"))
    with pytest.raises(DatasetError, match="no image column"):
        load_source(str(tmp_path / "t"), cache_dir=tmp_path / "c")
    Dataset.from_dict({"image": [pixels(1)[0]] * 2, "x": [0, 1]}).save_to_disk(str(tmp_path / "u"))
    with pytest.raises(DatasetError, match="no label column"):
        load_source(str(tmp_path / "u"), cache_dir=tmp_path / "c")


def test_a_damaged_saved_dataset_is_refused(tmp_path: Path) -> None:
    write_hf(tmp_path / "hf", {"train": 4})
    (arrow,) = (tmp_path / "hf" / "train").glob("*.arrow")
    arrow.write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="cannot load Hugging Face dataset"):
        load_source(str(tmp_path / "hf"), cache_dir=tmp_path / "c")
