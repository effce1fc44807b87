"""From uint8 images to what the model reads: ``to_model`` for one batch, ``collate`` to form
a batch, ``prepare`` for a whole in-memory split (the small-data cache), ``eval_batches``.

``to_model`` is the one conversion: uint8 [B, H, W, C] at the images' stored size ->
float32 [B, 3, S, S] in [-1, 1], grayscale repeated to 3 channels, resized (bilinear with
antialiasing; skipped when already S×S). It works per image, so converting a split in
chunks, a batch in a loader worker, or a batch on the device gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mutask.trainer.data.arrays import ImageSplit

# Images converted per chunk, to bound the float32 intermediate of a large split.
_CHUNK = 1024


def to_model(images: torch.Tensor, image_size: int) -> torch.Tensor:
    """float32 [B, 3, S, S] in [-1, 1] from uint8 [B, H, W, C] (C = 1 or 3), on its device."""
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    if images.ndim != 4 or images.shape[-1] not in (1, 3):
        raise ValueError(f"images must be [B, H, W, 1 or 3], got shape {tuple(images.shape)}")
    h, w = int(images.shape[1]), int(images.shape[2])
    x = images.permute(0, 3, 1, 2).to(torch.float32)
    if (h, w) != (image_size, image_size):
        x = F.interpolate(
            x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False
        )
    x = (x / 127.5 - 1.0).clamp_(-1.0, 1.0)
    return x.expand(-1, 3, -1, -1).contiguous()


def collate(images: Sequence[np.ndarray], image_size: int) -> np.ndarray:
    """One uint8 [B, H, W, C] batch from images of the same or of different sizes.

    Same size: stacked as stored (the model's resize happens on the whole batch later).
    Different sizes: each resized to S×S (bilinear, antialiased, uint8). Grayscale images
    among colour ones get three channels.
    """
    if not images:
        raise ValueError("cannot collate zero images")
    channels = max(int(im.shape[2]) for im in images)
    fixed = [np.repeat(im, 3, axis=2) if im.shape[2] < channels else im for im in images]
    if len({im.shape for im in fixed}) == 1:
        return np.stack(fixed)
    out = np.empty((len(fixed), image_size, image_size, channels), dtype=np.uint8)
    for k, im in enumerate(fixed):
        if im.shape[:2] == (image_size, image_size):
            out[k] = im
            continue
        t = torch.from_numpy(np.ascontiguousarray(im)).permute(2, 0, 1)[None]
        t = F.interpolate(
            t, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False
        )
        out[k] = t[0].permute(1, 2, 0).numpy()
    return out


def prepare(
    split: ImageSplit, image_size: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole in-memory split through ``to_model``: float32 [N, 3, S, S] and int64 [N] on
    ``device`` (converted in chunks, so only the result is held at full size)."""
    if image_size < 1:
        raise ValueError(f"image_size must be >= 1, got {image_size}")
    n, _, _, c = split.images.shape
    if c not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels, got shape {split.images.shape}")
    out = torch.empty((n, 3, image_size, image_size), dtype=torch.float32, device=device)
    for start in range(0, n, _CHUNK):
        chunk = torch.from_numpy(np.array(split.images[start : start + _CHUNK]))
        out[start : start + _CHUNK] = to_model(chunk.to(device), image_size)
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
