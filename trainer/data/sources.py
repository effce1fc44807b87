"""Resolve a ``dataset.source`` string to a loaded ``Source``; ``SourceCache`` memoises them.

A source is a built-in name (``digits``, ``mnist``, ``fashion_mnist``), a local path or
``file://`` URI of an ``.npz`` file or of a folder of idx(.gz) files, or a ``gs://`` URI
of an ``.npz`` file. An ``.npz`` holds ``x_<split>``/``y_<split>`` pairs (``x_train``,
``y_train``, optionally ``x_test``/``y_test`` or ``x_validation``/``y_validation``), each a
base split; or ``images``/``labels``, which become the single base split ``train``.
"""

from __future__ import annotations

import pickle
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from mutask.trainer.data.arrays import ImageSplit, Source, make_source, make_split
from mutask.trainer.data.builtin import (
    BUILTIN_SOURCES,
    load_digits_source,
    load_fashion_mnist_source,
    load_mnist_source,
)
from mutask.trainer.data.download import default_cache_dir, fetch_gcs
from mutask.trainer.data.errors import DatasetError
from mutask.trainer.data.idx import load_idx_folder

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
    if scheme == "gs":
        path = fetch_gcs(source, cache_dir or default_cache_dir(), task=task, field=FIELD)
        return load_npz(path, origin=source, task=task)
    if scheme == "file":
        path = Path(urllib.request.url2pathname(urllib.parse.urlparse(source).path))
        return load_path(path, origin=source, task=task)
    if scheme == "" and ("/" in source or "." in source):
        return load_path(Path(source).expanduser(), origin=source, task=task)
    raise DatasetError(
        task,
        FIELD,
        source,
        f"unknown source: not a built-in ({', '.join(BUILTIN_SOURCES)}), and not a path, "
        "file:// or gs:// URI",
    )


def load_path(path: Path, *, origin: str, task: str = "?") -> Source:
    """Load a local ``.npz`` file or idx folder."""
    if path.is_dir():
        return load_idx_folder(path, name=path.name, task=task, field=FIELD)
    if not path.exists():
        raise DatasetError(task, FIELD, origin, f"no such file or folder: {path}")
    return load_npz(path, origin=origin, task=task)


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
