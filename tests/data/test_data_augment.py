"""Augmenter: shapes, determinism, exact identity when off, flip and crop geometry, colour."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mutask.trainer.data import DS_KEYS, Augmenter

ALL_ON = {
    "ds_crop": True,
    "ds_flip_left_right": True,
    "ds_area_range_min": 0.05,
    "ds_aspect_ratio_range_min": 0.5,
    "ds_brightness_delta": 0.1,
    "ds_contrast_delta": 0.1,
    "ds_saturation_delta": 0.1,
    "ds_hue_delta": 0.1,
}


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(b: int = 16, s: int = 12, seed: int = 0) -> torch.Tensor:
    return torch.rand((b, 3, s, s), generator=_gen(seed)) * 2 - 1


def test_keys_match_the_search_space() -> None:
    assert set(ALL_ON) == set(DS_KEYS)


def test_shapes_range_and_dtype() -> None:
    x = _batch(64)
    out = Augmenter(ALL_ON)(x, _gen())
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert float(out.min()) >= -1.0 and float(out.max()) <= 1.0
    assert not torch.equal(out, x)


def test_deterministic_given_the_generator() -> None:
    x = _batch()
    aug = Augmenter(ALL_ON)
    assert torch.equal(aug(x, _gen(7)), aug(x, _gen(7)))
    assert not torch.equal(aug(x, _gen(7)), aug(x, _gen(8)))


@pytest.mark.parametrize(
    "hparams",
    [
        {},
        {"ds_image_size": 32, "opt_lr": 0.1},
        {
            "ds_crop": False,
            "ds_flip_left_right": False,
            "ds_area_range_min": 0.05,
            "ds_aspect_ratio_range_min": 0.75,
            "ds_brightness_delta": 0.0,
            "ds_contrast_delta": 0.0,
            "ds_saturation_delta": 0.0,
            "ds_hue_delta": 0.0,
        },
    ],
)
def test_all_off_returns_input_unchanged(hparams: dict[str, object]) -> None:
    x = _batch()
    gen = _gen()
    state = gen.get_state()
    aug = Augmenter(hparams)
    assert aug.is_identity
    out = aug(x, gen)
    assert torch.equal(out, x)
    assert torch.equal(gen.get_state(), state)


def test_flip_only_is_exact() -> None:
    x = _batch(200)
    out = Augmenter({"ds_flip_left_right": True})(x, _gen())
    same = (out == x).flatten(1).all(1)
    flipped = (out == x.flip(-1)).flatten(1).all(1)
    assert bool((same | flipped).all())
    assert 60 < int(flipped.sum()) < 140


def _coords(b: int, s: int) -> torch.Tensor:
    """Channel 0 = normalised x of each pixel centre, channel 1 = normalised y, channel 2 = 0."""
    u = (torch.arange(s) * 2 + 1) / s - 1
    x = torch.zeros((b, 3, s, s))
    x[:, 0] = u[None, None, :]
    x[:, 1] = u[None, :, None]
    return x


def test_full_box_crop_with_flip_matches_flip() -> None:
    x = _batch(100)
    full = {"ds_crop": True, "ds_area_range_min": 1.0, "ds_aspect_ratio_range_min": 1.0}
    torch.testing.assert_close(Augmenter(full)(x, _gen()), x, atol=1e-5, rtol=0)
    out = Augmenter({**full, "ds_flip_left_right": True})(x, _gen())
    close_same = (out - x).abs().flatten(1).amax(1) < 1e-5
    close_flip = (out - x.flip(-1)).abs().flatten(1).amax(1) < 1e-5
    assert bool((close_same | close_flip).all()) and 20 < int(close_flip.sum()) < 80


def test_crop_boxes_stay_inside_and_respect_ranges() -> None:
    aug = Augmenter({"ds_crop": True, "ds_area_range_min": 0.05, "ds_aspect_ratio_range_min": 0.5})
    boxes = aug.sample_boxes(4096, _gen())
    x0, y0, w, h = boxes.unbind(1)
    assert bool((x0 >= 0).all() and (y0 >= 0).all())
    assert bool((x0 + w <= 1 + 1e-6).all() and (y0 + h <= 1 + 1e-6).all())
    area, ratio = w * h, w / h
    assert bool((area >= 0.05 - 1e-6).all() and (area <= 1 + 1e-6).all())
    assert bool((ratio >= 0.5 - 1e-5).all() and (ratio <= 2 + 1e-5).all())
    assert float(area.min()) < 0.1 and float(area.max()) > 0.9


def test_crop_samples_exactly_the_box() -> None:
    s, b = 16, 32
    aug = Augmenter({"ds_crop": True, "ds_area_range_min": 0.1, "ds_aspect_ratio_range_min": 0.5})
    boxes = aug.sample_boxes(b, _gen(3))
    out = aug(_coords(b, s), _gen(3))
    u = (torch.arange(s) * 2 + 1) / s - 1
    lo, hi = float(u[0]), float(u[-1])
    x0, y0, w, h = (t[:, None] for t in boxes.unbind(1))
    want_x = (2 * x0 + w - 1 + w * u[None, :]).clamp(lo, hi)
    want_y = (2 * y0 + h - 1 + h * u[None, :]).clamp(lo, hi)
    torch.testing.assert_close(out[:, 0, 0, :], want_x, atol=1e-5, rtol=0)
    torch.testing.assert_close(out[:, 1, :, 0], want_y, atol=1e-5, rtol=0)


def test_crop_output_within_input_range() -> None:
    x = _batch(64) * 0.5
    out = Augmenter({"ds_crop": True, "ds_area_range_min": 0.01})(x, _gen())
    assert bool((out.flatten(1).amin(1) >= x.flatten(1).amin(1) - 1e-6).all())
    assert bool((out.flatten(1).amax(1) <= x.flatten(1).amax(1) + 1e-6).all())


def test_brightness_is_a_bounded_shift_per_image() -> None:
    x = _batch(32) * 0.5
    out = Augmenter({"ds_brightness_delta": 0.2})(x, _gen())
    shift = out - x
    per_image = shift.flatten(1)
    torch.testing.assert_close(per_image, per_image[:, :1].expand_as(per_image))
    assert float(per_image.abs().max()) <= 0.4 + 1e-6


def test_contrast_keeps_channel_means() -> None:
    x = _batch(32) * 0.3
    out = Augmenter({"ds_contrast_delta": 0.2})(x, _gen())
    torch.testing.assert_close(out.mean((2, 3)), x.mean((2, 3)), atol=1e-5, rtol=0)


def test_saturation_and_hue_leave_gray_images_alone() -> None:
    gray = _batch(16)[:, :1].expand(16, 3, 12, 12)
    out = Augmenter({"ds_saturation_delta": 0.2, "ds_hue_delta": 0.2})(gray, _gen())
    torch.testing.assert_close(out, gray, atol=1e-5, rtol=0)


def test_hue_keeps_luma() -> None:
    x = _batch(16) * 0.2
    out = Augmenter({"ds_hue_delta": 0.2})(x, _gen())
    luma = torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]
    torch.testing.assert_close((out * luma).sum(1), (x * luma).sum(1), atol=1e-4, rtol=0)
    assert not torch.allclose(out, x, atol=1e-3)


def test_numpy_bools_are_accepted() -> None:
    assert Augmenter({"ds_flip_left_right": np.True_}).flip_left_right is True


def test_bad_hparams() -> None:
    with pytest.raises(ValueError, match="unknown data hyperparameters"):
        Augmenter({"ds_flip": True})
    with pytest.raises(ValueError, match="ds_crop"):
        Augmenter({"ds_crop": 1})
    with pytest.raises(ValueError, match="ds_area_range_min"):
        Augmenter({"ds_crop": True, "ds_area_range_min": 0.0})
    with pytest.raises(ValueError, match=r"\[B, 3, S, S\]"):
        Augmenter(ALL_ON)(torch.zeros(2, 1, 4, 4), _gen())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu() -> None:
    x = _batch(32)
    aug = Augmenter(ALL_ON)
    out = aug(x.cuda(), _gen(5))
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), aug(x, _gen(5)), atol=1e-4, rtol=0)
