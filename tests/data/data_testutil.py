"""Synthetic data helpers for the data tests (a uniquely named module, not a conftest)."""

from __future__ import annotations

import numpy as np


def synthetic(
    n: int, h: int = 6, w: int = 5, c: int = 1, classes: int = 4, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Random uint8 images [n, h, w, c] and labels cycling 0..classes-1."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, h, w, c), dtype=np.uint8)
    labels = np.arange(n, dtype=np.int64) % classes
    return images, labels
