"""Hugging Face datasets as a source: a folder written by ``save_to_disk``, or Parquet files.

Read with Hugging Face ``datasets`` (memory-mapped Arrow, random access by row):

* ``save_to_disk`` folders (a ``DatasetDict`` with ``dataset_dict.json``, or one ``Dataset``
  with ``state.json``) through ``datasets.load_from_disk``; one ``Dataset`` is ``train``;
* a ``.parquet`` file (``train``) or a folder of them through
  ``datasets.load_dataset("parquet", data_dir=...)``, which names splits from the file
  names as the Hub does (``train-00000-of-00002.parquet``, ``data/test-*.parquet``, ...) and
  converts them once into its Arrow cache (under ``$MUTASK_CACHE_DIR/hf``).

A ``gs://`` dataset is first copied through the filesystem layer into
``$MUTASK_CACHE_DIR/hf-remote``, keyed by its files' generations (so a changed dataset is
copied again). The image column is the first ``Image`` feature (else one named ``image``,
``img`` or ``pixel_values`` holding arrays); the label column the first ``ClassLabel``
(whose ``num_classes`` is then the class count) else ``label``/``labels``/``target``/``cls``.
Split names are canonical (``valid`` -> ``validation``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mutask.trainer.data.arrays import Source, check_labels
from mutask.trainer.data.decode import decode_with_mode
from mutask.trainer.data.download import default_cache_dir
from mutask.trainer.data.errors import DatasetError
from mutask.trainer.data.filesystem import FIELD, Location, download, locate, read_ranges
from mutask.trainer.data.records import Records, canonical_split

IMAGE_COLUMNS = ("image", "img", "pixel_values")
LABEL_COLUMNS = ("label", "labels", "target", "cls", "fine_label")
DISK_MARKERS = ("dataset_dict.json", "state.json")


@dataclass(frozen=True, eq=False)
class HfRecords:
    """One split of a Hugging Face dataset: its image column, read by row."""

    dataset: Any  # datasets.Dataset with only the image column
    encoded: bool  # an Image feature ({bytes, path}) rather than arrays
    labels: np.ndarray
    source: str
    split: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def where(self, row: int) -> str:
        return f"{self.source} ({self.split} row {row})"

    def fetch(self, rows: np.ndarray, *, task: str = "?") -> list[tuple[np.ndarray, str]]:
        index = [int(r) for r in rows]
        if not self.encoded:
            arrays = self.dataset.with_format("numpy")[index]
            values = arrays[next(iter(arrays))]
            out = []
            for value in values:
                image = np.asarray(value, dtype=np.uint8)
                image = image[..., None] if image.ndim == 2 else image
                out.append((image, "L" if image.shape[-1] == 1 else "RGB"))
            return out
        table = self.dataset.with_format("arrow")[index]
        cells = table.column(0).to_pylist()
        images = []
        for row, cell in zip(index, cells, strict=True):
            data = (cell or {}).get("bytes")
            if data is None and (cell or {}).get("path"):
                where = str(cell["path"])
                loc = locate(where, task=task)
                data = read_ranges(loc, [loc.path], task=task, source=self.source)[0]
            if data is None:
                raise DatasetError(task, FIELD, self.source, f"{self.where(row)} has no image")
            images.append(decode_with_mode(data, self.where(row), task=task, source=self.source))
        return images


def is_hf_disk(names: set[str]) -> bool:
    """Whether a folder's file names mark a ``save_to_disk`` dataset."""
    return any(m in names for m in DISK_MARKERS)


def load_hf(
    uri: str, root: Location, *, parquet: bool, task: str = "?", cache_dir: Path | None = None
) -> Source:
    """Load a saved dataset (``parquet=False``) or Parquet files as a ``Source``."""
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - datasets is a trainer dependency
        raise DatasetError(
            task, FIELD, uri, "reading Hugging Face datasets needs `datasets` (mutask[trainer])"
        ) from err
    cache = cache_dir or default_cache_dir()
    local = root.local() or _copy_remote(uri, root, cache, task=task)
    try:
        if parquet:
            files: Any = {"train": str(local)} if local.is_file() else None
            loaded = datasets.load_dataset(
                "parquet",
                data_files=files,
                data_dir=None if files else str(local),
                cache_dir=str(cache / "hf"),
            )
        else:
            loaded = datasets.load_from_disk(str(local))
    except DatasetError:
        raise
    except Exception as err:  # datasets raises many kinds (FileNotFoundError, ValueError, ...)
        raise DatasetError(
            task, FIELD, uri, f"cannot load Hugging Face dataset: {type(err).__name__}: {err}"
        ) from err
    parts = dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {"train": loaded}
    splits: dict[str, Records] = {}
    num_classes: int | None = None
    names: tuple[str, ...] = ()
    for name, ds in parts.items():
        image, encoded = _image_column(ds, datasets, uri, task)
        label, classes = _label_column(ds, datasets, uri, task)
        if classes is not None:
            num_classes, names = len(classes), tuple(classes)
        labels = np.asarray(ds.with_format("arrow")[label].to_numpy(), dtype=np.int64)
        base = canonical_split(name)
        splits[base] = HfRecords(ds.select_columns([image]), encoded, labels, uri, base)
    top = max((int(r.labels.max()) for r in splits.values() if len(r)), default=-1)
    count = num_classes if num_classes is not None else top + 1
    for records in splits.values():
        assert isinstance(records, HfRecords)
        check_labels(records.labels, count, task=task, field=FIELD, where=uri, name=records.where)
    if count < 1:
        raise DatasetError(task, FIELD, uri, "the dataset has no labelled examples")
    return Source(
        name=root.name.removesuffix(".parquet"),
        splits=splits,
        num_classes=count,
        origin=uri,
        kind="huggingface",
        class_names=names,
    )


def _image_column(ds: Any, datasets: Any, uri: str, task: str) -> tuple[str, bool]:
    for column, feature in ds.features.items():
        if isinstance(feature, datasets.Image):
            return column, True
    for column in IMAGE_COLUMNS:
        if column in ds.features:
            return column, False
    raise DatasetError(
        task,
        FIELD,
        uri,
        f"no image column (an Image feature, or one of {list(IMAGE_COLUMNS)}); "
        f"columns: {list(ds.features)}",
    )


def _label_column(ds: Any, datasets: Any, uri: str, task: str) -> tuple[str, list[str] | None]:
    for column, feature in ds.features.items():
        if isinstance(feature, datasets.ClassLabel):
            return column, list(feature.names)
    for column in LABEL_COLUMNS:
        if column in ds.features:
            return column, None
    raise DatasetError(
        task,
        FIELD,
        uri,
        f"no label column (a ClassLabel feature, or one of {list(LABEL_COLUMNS)}); "
        f"columns: {list(ds.features)}",
    )


def _copy_remote(uri: str, root: Location, cache: Path, *, task: str) -> Path:
    """Copy a remote dataset (file or folder) into the local cache once per version."""
    fs = root.fs
    try:
        if fs.isfile(root.path):
            found = {root.path: fs.info(root.path)}
        else:
            found = fs.find(root.path, detail=True)
    except (OSError, ValueError) as err:
        raise DatasetError(task, FIELD, uri, f"cannot list {root.uri}: {err}") from err
    if not found:
        raise DatasetError(task, FIELD, uri, "no such file or folder")
    versions = sorted(
        f"{path}|{info.get('generation')}|{info.get('size')}" for path, info in found.items()
    )
    key = hashlib.sha256("\n".join(versions).encode()).hexdigest()[:32]
    target = cache / "hf-remote" / key / root.name
    done = target.parent / ".complete"
    if done.is_file():
        return target
    base = root.path.rstrip("/")
    for path in sorted(found):
        rel = path[len(base) :].strip("/") if len(found) > 1 or path != base else ""
        download(root.at(path), target / rel if rel else target, task=task, source=uri)
    done.write_text("\n".join(versions))
    return target
