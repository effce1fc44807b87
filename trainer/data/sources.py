"""Resolve a ``dataset.source`` string to a loaded ``Source``; ``SourceCache`` memoises them.

A source is a built-in name (``digits``, ``mnist``, ``fashion_mnist``) or a local path,
``file://`` or ``gs://`` URI of:

* an ``.npz`` file: ``x_<split>``/``y_<split>`` pairs (``x_train``, ``y_train``, and
  optionally ``x_test``/``y_test``, ``x_val``/``y_val`` or ``x_validation``...), each a base
  split; or ``images``/``labels``, the single base split ``train``;
* a folder of idx(.gz) files (the MNIST format);
* an image folder, ``ROOT/<class>/<image>`` or ``ROOT/<split>/<class>/<image>``
  (:mod:`.folder`);
* WebDataset tar shards: a brace pattern, a glob, one ``.tar`` or a folder of them
  (:mod:`.shards`);
* a Hugging Face dataset: a ``save_to_disk`` folder, a ``.parquet`` file or a folder of
  Parquet files (:mod:`.hf`).

Folders are told apart by what they hold (in this order): a saved Hugging Face dataset,
Parquet files, ``.tar`` shards, idx files, class folders. Every remote read goes through
:mod:`.filesystem`; an ``.npz`` on GCS is copied into the cache first (keyed by its
generation).
"""

from __future__ import annotations

import pickle
import urllib.parse
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mutask.trainer.data.arrays import ImageSplit, Source, make_source, make_split
from mutask.trainer.data.builtin import (
    BUILTIN_SOURCES,
    load_digits_source,
    load_fashion_mnist_source,
    load_mnist_source,
)
from mutask.trainer.data.download import default_cache_dir
from mutask.trainer.data.errors import DatasetError
from mutask.trainer.data.filesystem import Location, download, locate, version_token
from mutask.trainer.data.folder import is_image_folder, list_entries, load_image_folder
from mutask.trainer.data.hf import is_hf_disk, load_hf
from mutask.trainer.data.idx import find_idx_files, load_idx_folder
from mutask.trainer.data.shards import is_shard_uri, load_shards

FIELD = "dataset.source"


def load_source(
    source: str,
    *,
    task: str = "?",
    cache_dir: Path | None = None,
    cache: SourceCache | None = None,
) -> Source:
    """Load ``source`` (see module doc); through ``cache`` when one is given."""
    if cache is not None:
        return cache.load(source, task=task)
    if not isinstance(source, str) or not source.strip():
        raise DatasetError(task, FIELD, source, "must be a non-empty string")
    if source == "digits":
        return load_digits_source(task=task)
    if source == "mnist":
        return load_mnist_source(task=task)
    if source == "fashion_mnist":
        return load_fashion_mnist_source(task=task, cache_dir=cache_dir)
    scheme = urllib.parse.urlparse(source).scheme
    pathlike = scheme == "" and ("/" in source or "." in source or Path(source).exists())
    if scheme not in ("gs", "file") and not pathlike:
        raise DatasetError(
            task,
            FIELD,
            source,
            f"unknown source: not a built-in ({', '.join(BUILTIN_SOURCES)}), and not a path, "
            "file:// or gs:// URI",
        )
    loc = locate(source, task=task)
    if loc.protocol == "gs" and "/" not in loc.path:
        raise DatasetError(task, FIELD, source, "expected gs://BUCKET/OBJECT or gs://BUCKET/FOLDER")
    if is_shard_uri(source):
        return load_shards(source, loc, task=task, cache_dir=cache_dir)
    return load_location(source, loc, task=task, cache_dir=cache_dir)


def load_location(
    source: str, loc: Location, *, task: str = "?", cache_dir: Path | None = None
) -> Source:
    """Load the file or folder at ``loc`` by what it is (see module doc)."""
    fs = loc.fs
    try:
        is_dir = fs.isdir(loc.path)
        exists = is_dir or fs.exists(loc.path)
    except (OSError, ValueError) as err:
        raise DatasetError(task, FIELD, source, f"cannot reach {loc.uri}: {err}") from err
    if not exists:
        what = "no such object" if loc.protocol == "gs" else "no such file or folder"
        raise DatasetError(task, FIELD, source, f"{what}: {loc.uri}")
    if not is_dir:
        if loc.path.lower().endswith(".parquet"):
            return load_hf(source, loc, parquet=True, task=task, cache_dir=cache_dir)
        local = loc.local() or _copy_object(source, loc, cache_dir, task=task)
        return load_npz(local, origin=source, task=task)
    entries = list_entries(loc, loc.path, task=task, origin=source)
    names = {n for n, d in entries if not d}
    dirs = {n for n, d in entries if d}
    if is_hf_disk(names):
        return load_hf(source, loc, parquet=False, task=task, cache_dir=cache_dir)
    if any(n.lower().endswith(".parquet") for n in names) or _has_parquet(loc, dirs):
        return load_hf(source, loc, parquet=True, task=task, cache_dir=cache_dir)
    if any(n.lower().endswith(".tar") for n in names):
        return load_shards(source, loc, task=task, cache_dir=cache_dir)
    folder = loc.local()
    if folder is not None and find_idx_files(folder):
        return load_idx_folder(folder, name=folder.name, task=task, field=FIELD)
    if is_image_folder(entries):
        return load_image_folder(loc, origin=source, task=task)
    raise DatasetError(
        task,
        FIELD,
        source,
        f"no dataset found in {loc.uri}: no idx files (e.g. train-images-idx3-ubyte.gz and "
        "train-labels-idx1-ubyte.gz), .tar shards, Parquet files, saved Hugging Face "
        "dataset, or class folders with images",
    )


def _has_parquet(loc: Location, dirs: set[str]) -> bool:
    """Parquet files one level down (the Hub's ``data/`` or per-split folders)."""
    for name in sorted(dirs)[:8]:
        inner = list_entries(loc, f"{loc.path.rstrip('/')}/{name}", task="?", origin=loc.uri)
        if any(not d and n.lower().endswith(".parquet") for n, d in inner):
            return True
    return False


def _copy_object(source: str, loc: Location, cache_dir: Path | None, *, task: str) -> Path:
    """A remote file copied into the cache, keyed by its version; reused while unchanged."""
    bucket, _, key = loc.path.partition("/")
    token = version_token(loc).split("-")[0]
    dest = (cache_dir or default_cache_dir()) / "gcs" / bucket / token / key
    if dest.is_file():
        return dest
    return download(loc, dest, task=task, source=source)


def load_npz(path: Path, *, origin: str, task: str = "?") -> Source:
    """Load an ``.npz`` archive of image/label arrays (see module doc for the names)."""
    try:
        loaded = np.load(path, allow_pickle=False)
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise DatasetError(task, FIELD, origin, "not an .npz archive (a single array)")
        with loaded as archive:
            arrays = {key: archive[key] for key in archive.files}
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as err:
        raise DatasetError(task, FIELD, origin, f"cannot read .npz: {err}") from err
    pairs: dict[str, tuple[str, str]] = {}
    for key in arrays:
        if key.startswith("x_"):
            pairs[key[2:]] = (key, "y_" + key[2:])
    if not pairs and "images" in arrays:
        pairs["train"] = ("images", "labels")
    if not pairs:
        raise DatasetError(
            task,
            FIELD,
            origin,
            f"missing arrays: expected x_train/y_train[/x_test/y_test] or images/labels, "
            f"found {sorted(arrays)}",
        )
    splits: dict[str, ImageSplit] = {}
    for split, (x_key, y_key) in sorted(pairs.items()):
        if y_key not in arrays:
            raise DatasetError(
                task, FIELD, origin, f"missing arrays: {x_key!r} has no {y_key!r} beside it"
            )
        splits[split] = make_split(
            arrays[x_key], arrays[y_key], task=task, field=FIELD, where=f"{origin}:{x_key}"
        )
    stem = path.name[: -len(".npz")] if path.name.endswith(".npz") else path.name
    return make_source(stem, splits, task=task, field=FIELD, origin=origin)


class SourceCache:
    """Per-process memo of loaded sources, keyed by the source string (explicit, no globals).

    Sources are immutable (read-only arrays), so tasks can share them safely.
    """

    def __init__(self, cache_dir: Path | None = None) -> None:
        self.cache_dir = cache_dir
        self._sources: dict[str, Source] = {}

    def load(self, source: str, *, task: str = "?") -> Source:
        """The cached ``Source`` for ``source``, loading it on first use."""
        if source not in self._sources:
            self._sources[source] = load_source(source, task=task, cache_dir=self.cache_dir)
        return self._sources[source]

    def __contains__(self, source: object) -> bool:
        return source in self._sources

    def __len__(self) -> int:
        return len(self._sources)

    def clear(self) -> None:
        """Forget every cached source."""
        self._sources.clear()


@dataclass(frozen=True)
class SourceInfo:
    """What a source is, cheaply: its kind, class count, base split sizes and the
    (H, W, C) of its first training image (its native resolution)."""

    name: str
    kind: str
    num_classes: int
    image_shape: tuple[int, int, int]
    split_sizes: dict[str, int]
    class_names: tuple[str, ...] = ()

    @property
    def image_size(self) -> int:
        """The native image size: the longer side of the first image."""
        return max(self.image_shape[0], self.image_shape[1])


def source_info(source: str, *, task: str = "?", cache: SourceCache | None = None) -> SourceInfo:
    """Describe ``source`` (listing it and decoding one image; nothing else is read)."""
    src = load_source(source, task=task, cache=cache)
    return SourceInfo(
        name=src.name,
        kind=src.kind,
        num_classes=src.num_classes,
        image_shape=src.image_shape,
        split_sizes={k: len(v) for k, v in src.splits.items()},
        class_names=src.class_names,
    )
