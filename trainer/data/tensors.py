"""Turn an ``ImageSplit`` into model-ready tensors once, and batch them for evaluation."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from mutask.trainer.data.arrays import ImageSplit

# Images converted per chunk, to bound the float32 intermediate of a large split.
_CHUNK = 1024


def prepare(
    split: ImageSplit, image_size: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """float32 images [N, 3, S, S] in [-1, 1] and int64 labels [N] on ``device``.

    Grayscale is repeated to 3 channels; images are resized once to S×S (bilinear with
    antialiasing; skipped when already S×S).
    """
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    n, h, w, c = split.images.shape
    if c not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got shape {split.images.shape}")
    out = torch.empty((n, 3, image_size, image_size), dtype=torch.float32, device=device)
    for start in range(0, n, _CHUNK):
        chunk = torch.from_numpy(np.array(split.images[start : start + _CHUNK]))
        x = chunk.to(device).permute(0, 3, 1, 2).to(torch.float32)
        if (h, w) != (image_size, image_size):
            x = F.interpolate(
                x,
                size=(image_size, image_size),
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )
        x = (x / 127.5 - 1.0).clamp_(-1.0, 1.0)
        out[start : start + _CHUNK] = x.expand(-1, 3, -1, -1)
    labels = torch.from_numpy(np.array(split.labels, dtype=np.int64)).to(device)
    return out, labels


def eval_batches(
    images: torch.Tensor, labels: torch.Tensor, batch_size: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive (x, y) batches covering every example once, in order; the last may be short."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    for start in range(0, images.shape[0], batch_size):
        yield images[start : start + batch_size], labels[start : start + batch_size]
