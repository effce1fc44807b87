"""prepare (uint8 NHWC -> normalised float NCHW, resized once) and eval_batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from data_testutil import synthetic

from mutask.trainer.data import ImageSplit, eval_batches, prepare


def test_prepare_gray_no_resize_is_exact() -> None:
    images = np.array([[[0, 255], [127, 128]]], dtype=np.uint8)[..., None]
    x, y = prepare(ImageSplit(images, np.array([3])), 2)
    assert x.shape == (1, 3, 2, 2) and x.dtype == torch.float32
    assert y.dtype == torch.int64 and y.tolist() == [3]
    expected = torch.tensor([[-1.0, 1.0], [127 / 127.5 - 1, 128 / 127.5 - 1]])
    for c in range(3):
        torch.testing.assert_close(x[0, c], expected)


def test_prepare_resizes_once_with_antialias() -> None:
    images, labels = synthetic(5, 28, 28, 3)
    x, y = prepare(ImageSplit(images, labels), 16)
    assert x.shape == (5, 3, 16, 16) and x.is_contiguous()
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    ref = (
        F.interpolate(
            torch.from_numpy(images).permute(0, 3, 1, 2).float(),
            size=(16, 16),
            mode="bilinear",
            antialias=True,
            align_corners=False,
        )
        / 127.5
        - 1.0
    )
    torch.testing.assert_close(x, ref.clamp(-1, 1))
    assert torch.equal(y, torch.from_numpy(labels))


def test_prepare_keeps_constant_images_constant_when_upscaling() -> None:
    images = np.full((2, 8, 8, 1), 51, dtype=np.uint8)
    x, _ = prepare(ImageSplit(images, np.zeros(2, dtype=np.int64)), 32)
    torch.testing.assert_close(x, torch.full((2, 3, 32, 32), 51 / 127.5 - 1.0))


def test_prepare_chunks_large_splits_consistently() -> None:
    images, labels = synthetic(2100, 4, 4, 1)
    x, _ = prepare(ImageSplit(images, labels), 4)
    assert torch.equal(x[:, 0], torch.from_numpy(images[..., 0]).float() / 127.5 - 1.0)


def test_prepare_rejects_bad_size() -> None:
    images, labels = synthetic(2)
    with pytest.raises(ValueError, match="image_size"):
        prepare(ImageSplit(images, labels), 0)


def test_eval_batches_cover_all_in_order() -> None:
    x = torch.arange(10).float()[:, None, None, None].expand(10, 3, 2, 2)
    y = torch.arange(10)
    batches = list(eval_batches(x, y, 4))
    assert [len(b[1]) for b in batches] == [4, 4, 2]
    assert torch.equal(torch.cat([b[1] for b in batches]), y)
    assert torch.equal(torch.cat([b[0] for b in batches]), x)
    with pytest.raises(ValueError):
        list(eval_batches(x, y, 0))
