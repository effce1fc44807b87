"""The input pipeline: the small-data cache and the worker stream give the same batches for
every source and worker count; streams resume mid-epoch; prefetch is bounded; the switch
between cache and stream is automatic and logged; worker errors come back typed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from data_files import pixels, write_folder, write_hf, write_shards
from data_testutil import synthetic

from mutask.trainer.config import DatasetConfig
from mutask.trainer.data import Augmenter, DatasetError, collate, load_task, to_model
from mutask.trainer.iteration.taskdata import DeviceTask, TaskDataCache

CPU = torch.device("cpu")
AUG = Augmenter(
    {
        "ds_crop": True,
        "ds_flip_left_right": True,
        "ds_brightness_delta": 0.2,
        "ds_contrast_delta": 0.2,
        "ds_saturation_delta": 0.2,
        "ds_hue_delta": 0.1,
    }
)


def _task(
    source: str, *, cache: bool, workers: int = 2, size: int = 16, **kw: object
) -> DeviceTask:
    logs: list[str] = []
    data = TaskDataCache(
        CPU, cache_bytes=None if cache else 0, workers=workers, prefetch=3, log=logs.append
    ).get("t", DatasetConfig(source=source, **kw), size)  # type: ignore[arg-type]
    assert data.cached is cache
    assert ("within the" if cache else "over the") in logs[0]
    return data


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("sources")
    write_folder(root / "folder", {"train": 9, "test": 3}, size=(20, 14))
    write_shards(root / "shards", "train", 26, per_shard=8)
    write_shards(root / "shards", "test", 7, seed=3)
    write_hf(root / "hf", {"train": 24, "validation": 5, "test": 6})
    xtr, ytr = synthetic(40, 9, 7, 1, classes=3)
    xva, yva = synthetic(6, 9, 7, 1, classes=3, seed=1)
    xte, yte = synthetic(8, 9, 7, 1, classes=3, seed=2)
    np.savez(
        root / "toy.npz", x_train=xtr, y_train=ytr, x_val=xva, y_val=yva, x_test=xte, y_test=yte
    )
    return {
        "folder": str(root / "folder"),
        "shards": str(root / "shards"),
        "hf": str(root / "hf"),
        "npz": str(root / "toy.npz"),
    }


def _same(
    a: list[tuple[torch.Tensor, torch.Tensor]], b: list[tuple[torch.Tensor, torch.Tensor]]
) -> None:
    assert len(a) == len(b)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert xa.dtype == xb.dtype == torch.float32 and xa.shape == xb.shape
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


@pytest.mark.parametrize("kind", ["folder", "shards", "hf", "npz"])
def test_cache_and_stream_give_the_same_batches(sources: dict[str, str], kind: str) -> None:
    cached = _task(sources[kind], cache=True)
    for workers in (0, 2):
        streamed = _task(sources[kind], cache=False, workers=workers)
        _same(cached.train.stream(8, 5, AUG).take(9), streamed.train.stream(8, 5, AUG).take(9))
        _same([cached.validation.tensors()], [streamed.validation.tensors()])
        _same(list(cached.test.batches(4)), list(streamed.test.batches(4)))
        assert torch.equal(cached.test.tensors(3)[0], streamed.test.tensors(3)[0])


def test_npz_validation_arrays_are_the_validation_split(sources: dict[str, str]) -> None:
    data = load_task("t", DatasetConfig(source=sources["npz"]))
    assert (len(data.train), len(data.validation), len(data.test)) == (40, 6, 8)
    spelled = load_task("t", DatasetConfig(source=sources["npz"], validation_split="val[:3]"))
    np.testing.assert_array_equal(spelled.validation.images, data.validation.images[:3])


def test_a_streamed_stream_resumes_mid_epoch(sources: dict[str, str]) -> None:
    data = _task(sources["folder"], cache=False)
    stream = data.train.stream(5, 11, AUG)
    stream.take(4)  # 20 of 27 examples: mid-epoch, with batches read ahead by the workers
    state = stream.state_dict()
    assert (state["epoch"], state["position"], state["batches"]) == (0, 20, 4)
    expected = stream.take(6)  # crosses into the next epoch
    again = _task(sources["folder"], cache=False, workers=1).train.stream(5, 11, AUG)
    again.load_state_dict(state)
    _same(expected, again.take(6))
    cached = _task(sources["folder"], cache=True).train.stream(5, 11, AUG)
    cached.load_state_dict(state)
    _same(expected, cached.take(6))


def test_prefetch_is_bounded(sources: dict[str, str]) -> None:
    stream = _task(sources["shards"], cache=False, workers=2).train.stream(4, 0, None)
    for consumed in range(1, 12):
        next(stream)
        in_flight = stream.planner.batches - consumed
        assert in_flight <= 2 * 2  # workers x ceil(prefetch 3 / workers)


def test_the_stream_is_the_same_for_any_worker_count(sources: dict[str, str]) -> None:
    one = _task(sources["hf"], cache=False, workers=1).train.stream(7, 3, AUG).take(8)
    two = _task(sources["hf"], cache=False, workers=2).train.stream(7, 3, AUG).take(8)
    _same(one, two)


def test_mixed_sizes_are_batched_at_the_model_size(tmp_path: Path) -> None:
    big, small = pixels(1, 30, 20)[0], pixels(1, 8, 8, 1)[0]
    batch = collate([big, small], 16)
    assert batch.shape == (2, 16, 16, 3) and batch.dtype == np.uint8
    np.testing.assert_array_equal(batch[1, ..., 0], batch[1, ..., 2])  # gray -> 3 channels
    same = collate([big, big], 16)
    assert same.shape == (2, 30, 20, 3)  # one size: kept as stored until to_model
    assert to_model(torch.from_numpy(same), 16).shape == (2, 3, 16, 16)


def test_a_bad_image_stops_a_stream_with_a_typed_error(tmp_path: Path) -> None:
    write_folder(tmp_path / "pets", {"train": 6, "test": 2}, fmt="JPEG")
    victim = tmp_path / "pets" / "train" / "emu" / "0003.jpeg"
    victim.write_bytes(victim.read_bytes()[:150])
    splits = {"train_split": "train", "validation_split": "test[:1]", "test_split": "test[1:]"}
    data = _task(str(tmp_path / "pets"), cache=False, workers=2, **splits)
    stream = data.train.stream(6, 0, None)
    with pytest.raises(DatasetError) as info:
        stream.take(4)  # 24 > 18 examples: the bad one is read
    assert str(victim) in str(info.value) and "cannot decode image" in str(info.value)
    with pytest.raises(DatasetError, match="cannot decode image"):  # caching reads it too
        _task(str(tmp_path / "pets"), cache=True, **splits)


def test_converted_modes_are_logged_once(tmp_path: Path) -> None:
    from data_files import encode

    root = tmp_path / "modes"
    for cls, mode in (("a", "RGBA"), ("b", "RGB")):
        (root / cls).mkdir(parents=True)
        for i in range(4):
            (root / cls / f"{i}.png").write_bytes(encode(pixels(1, seed=i)[0], mode=mode))
    logs: list[str] = []
    cache = TaskDataCache(CPU, cache_bytes=0, workers=1, prefetch=2, log=logs.append)
    cfg = DatasetConfig(
        source=str(root),
        test_split="train[:2]",
        train_split="train[2:7]",
        validation_split="train[7:]",
    )
    cache.get("t", cfg, 8).train.stream(4, 0, None).take(5)
    conversions = [line for line in logs if "converted to RGB" in line]
    assert len(conversions) == 1 and "mode RGBA" in conversions[0]
    assert "/a/" in conversions[0]


def test_the_cache_budget_switch(sources: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUTASK_DATA_CACHE_MB", "0.05")  # 51 KiB: 30 images at 16 px fit
    logs: list[str] = []
    small = TaskDataCache(CPU, workers=0, log=logs.append).get(
        "t", DatasetConfig(source=sources["folder"]), 4
    )
    big = TaskDataCache(CPU, workers=0, log=logs.append).get(
        "t", DatasetConfig(source=sources["folder"]), 32
    )
    assert small.cached and not big.cached
    assert "within the 51.2 KiB in-memory cache (MUTASK_DATA_CACHE_MB)" in logs[0]
    assert "streamed by 0 loader worker(s)" in logs[1]


def test_resizing_on_the_device_gives_the_same_batches(sources: dict[str, str]) -> None:
    """The accelerator way (uint8 batches resized and augmented where the model runs),
    exercised on the CPU: the same numbers as finishing them in the workers."""
    from mutask.trainer.data.sets import Pipeline, TrainSet

    data = load_task("t", DatasetConfig(source=sources["folder"]))
    ways = [
        Pipeline(CPU, 16, workers=1, prefetch=2, log=lambda _l: None, on_device=choice)
        for choice in (False, True)
    ]
    a, b = (TrainSet(data.train, p, None).stream(6, 2, AUG).take(6) for p in ways)
    _same(a, b)
    _same(list(ways[0].batches(data.test, 4)), list(ways[1].batches(data.test, 4)))
