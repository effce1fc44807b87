"""Bad data: every dataset that cannot be a task is refused with exit 2, one line naming the
task, the field and the source (and the file where there is one), no traceback, and the store
exactly as it was. ``.npz`` files (errors_testutil.bad_npz_files) and the streaming sources
(image folders, WebDataset shards, Parquet), written here as users write them; small, so
the preflight reads them (into the in-memory cache) before anything is written. Also the
memory preflight, for cached and streamed data."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from errors_testutil import BOOT, INTRO, Places, refused
from PIL import Image

# a dataset file that cannot be a task: (file name in errors_testutil, error-line text)
DATA_CASES = [
    ("huge-label", "too large"),
    ("one-class", "needs at least two"),
    ("no-arrays", "missing arrays"),
    ("x-without-y", "missing arrays"),
    ("float-pixels-above-1", "float pixel values"),
    ("nan-pixels", "float pixel values"),
    ("int-pixels-above-255", "integer pixel values"),
    ("flat-images", "images have shape"),
    ("four-channels", "images have shape"),
    ("count-mismatch", "shape mismatch"),
    ("negative-label", "negative"),
    ("float-labels", "expected integers"),
    ("empty-images", "empty shape"),
    ("splits-disagree", "disagree on image shape"),
    ("not-an-npz", "cannot read .npz"),
    ("truncated", "cannot read .npz"),
    ("pickled-objects", "cannot read .npz"),
    ("folder-without-idx", "dataset.source="),
]
DATA_LABEL_CASES = [  # the two-class file with labels / splits it does not have
    ("labels-beyond-source", ["--labels", "0,5"], "dataset.labels=[0, 5]"),
    ("three-labels-of-two", ["--labels", "0,1,2"], "dataset.labels=[0, 1, 2]"),
]


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


def _folder(root: Path, classes: dict[str, int]) -> Path:
    """``root/<split>/<class>/<i>.png`` for splits train and test, ``classes[name]`` images
    of each class in each."""
    for split in ("train", "test"):
        for name, count in classes.items():
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                (root / split / name / f"{i}.png").write_bytes(_png(i))
    return root


def _shard(path: Path, samples: list[dict[str, bytes]]) -> Path:
    """A WebDataset tar: sample ``k``'s members are ``s<k>.<ext>``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tar:
        for k, sample in enumerate(samples):
            for ext, data in sample.items():
                info = tarfile.TarInfo(f"s{k:04d}.{ext}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def _parquet_without_labels(path: Path) -> Path:
    from datasets import Dataset, Features
    from datasets import Image as ImageFeature

    images = [Image.open(io.BytesIO(_png(i))) for i in range(6)]
    ds = Dataset.from_dict({"image": images}, features=Features({"image": ImageFeature()}))
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.to_parquet(str(path))
    return path


def bad_sources(tmp: Path) -> dict[str, str]:
    """One streaming-kind source per way it can be wrong, by name."""
    truncated = _folder(tmp / "truncated", {"cat": 4, "dog": 4})
    (truncated / "train" / "dog" / "2.png").write_bytes(_png(2)[:40])
    labelled = [{"png": _png(i), "cls": str(i % 2).encode()} for i in range(6)]
    return {
        "folder-class-without-images": str(_folder(tmp / "empty-class", {"cat": 4, "dog": 0})),
        "folder-one-class": str(_folder(tmp / "one-class", {"cat": 6})),
        "folder-truncated-image": str(truncated),
        "folder-stray-image": str(_stray(_folder(tmp / "stray", {"cat": 3, "dog": 3}))),
        "shard-label-out-of-range": str(
            _shard(tmp / "big" / "train-0000.tar", [*labelled, {"png": _png(9), "cls": b"99999"}])
        ),
        "shard-label-not-a-number": str(
            _shard(tmp / "nan" / "train-0000.tar", [*labelled, {"png": _png(9), "cls": b"x"}])
        ),
        "shard-sample-without-image": str(
            _shard(tmp / "noimg" / "train-0000.tar", [*labelled, {"cls": b"1"}])
        ),
        "shards-brace-matching-nothing": str(tmp / "none" / "train-{0000..0003}.tar"),
        "parquet-without-labels": str(_parquet_without_labels(tmp / "hf" / "train.parquet")),
        "gs-bucket-only": "gs://bucket",
        "path-with-colon": str(tmp / "a:b"),
    }


def _stray(root: Path) -> Path:
    (root / "stray.png").write_bytes(_png(0))
    return root


SOURCE_CASES = [  # (name in bad_sources, error-line text)
    ("folder-class-without-images", "has no images"),
    ("folder-one-class", "needs at least two"),
    ("folder-truncated-image", "cannot decode image"),
    ("folder-stray-image", "stray.png"),
    ("shard-label-out-of-range", "99999"),
    ("shard-label-not-a-number", "not an integer"),
    ("shard-sample-without-image", "has no image"),
    ("shards-brace-matching-nothing", "does not exist"),
    ("parquet-without-labels", "no label column"),
    ("gs-bucket-only", "gs://BUCKET/PATH"),
    ("path-with-colon", "without ':'"),
]


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return bad_sources(tmp_path_factory.mktemp("bad-sources"))


@pytest.mark.parametrize(("name", "text"), DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_dataset_files(name: str, text: str, places: Places) -> None:
    argv = [*INTRO, "--dataset", f"{{npz:{name}}}"]
    line = refused(argv, places, text)
    assert "task 'newt': dataset.source=" in line


@pytest.mark.parametrize(("name", "text"), SOURCE_CASES, ids=[c[0] for c in SOURCE_CASES])
def test_bad_streaming_sources(
    name: str, text: str, places: Places, sources: dict[str, str]
) -> None:
    line = refused([*INTRO, "--dataset", sources[name]], places, text)
    assert f"dataset.source={sources[name]!r}" in line


@pytest.mark.parametrize(
    ("name", "flags", "text"), DATA_LABEL_CASES, ids=[c[0] for c in DATA_LABEL_CASES]
)
def test_bad_labels_for_a_dataset_file(
    name: str, flags: list[str], text: str, places: Places
) -> None:
    refused([*INTRO, "--dataset", "{npz:two-class}", *flags], places, text)


SMALL = ["--batch-size", "1", "--workers", "1"]


@pytest.mark.parametrize(
    ("argv", "free", "cache_mb", "text"),
    [
        ([*INTRO, "--batch-size", "65536"], 1 << 30, "1024", "budget.batch_size=65536"),
        ([*INTRO, *SMALL, "--dataset", "mnist"], 4 << 20, "1024", "dataset.source='mnist'"),
        ([*INTRO, *SMALL], 1 << 20, "0", "streamed"),
        ([*BOOT, "--image-size", "1024"], 64 << 30, "1024", "budget.batch_size=64"),
    ],
    ids=["batch-too-big", "cached-data-too-big", "streamed-too-big", "bootstrap-1024px"],
)
def test_a_run_that_cannot_fit_in_memory_is_refused_before_allocating(
    argv: list[str],
    free: int,
    cache_mb: str,
    text: str,
    places: Places,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mutask.trainer.iteration import preflight

    monkeypatch.setattr(preflight, "available_bytes", lambda _device: free)
    monkeypatch.setenv("MUTASK_DATA_CACHE_MB", cache_mb)
    assert "GiB are free" in refused(argv, places, text)
