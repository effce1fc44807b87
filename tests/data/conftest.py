"""Shared fixtures for the data tests: a per-session source cache and synthetic datasets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from data_testutil import synthetic

from mutask.trainer.data import SourceCache
from mutask.trainer.data.idx import write_idx


@pytest.fixture(scope="session")
def cache() -> SourceCache:
    """One cache for the session, so each built-in source loads once."""
    return SourceCache()


@pytest.fixture
def npz_file(tmp_path: Path) -> Callable[..., Path]:
    """Write an .npz with the given arrays under tmp_path; returns its path."""

    def write(name: str = "toy.npz", **arrays: np.ndarray) -> Path:
        path = tmp_path / name
        np.savez(path, **arrays)  # type: ignore[arg-type]
        return path

    return write


@pytest.fixture
def idx_folder(tmp_path: Path) -> Path:
    """A folder of gzipped idx files: 30 train and 10 test 7×7 images, 3 classes."""
    folder = tmp_path / "toy-idx"
    folder.mkdir()
    for prefix, n, seed in (("train", 30, 1), ("t10k", 10, 2)):
        images, labels = synthetic(n, 7, 7, 1, classes=3, seed=seed)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images[..., 0])
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    return folder
