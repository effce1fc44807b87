"""Batch-vectorised training augmentation driven by the µ2Net ``ds_*`` hyperparameters.

Random-resized crop (area fraction in [area_min, 1], aspect ratio log-uniform in
[ar_min, 1/ar_min], like TF's ``sample_distorted_bounding_box``: up to 10 tries, else the
whole image) and horizontal flip are one ``affine_grid``/``grid_sample`` pass over
already-resized images. Colour jitter (brightness, contrast, saturation, hue as a rotation
in YIQ space), in that order, works on [0, 1] values with TF's ``random_*`` ranges:
brightness adds U[-d, d], contrast scales around each channel's mean by U[1-d, 1+d],
saturation blends with the luma by U[1-d, 1+d] (TF scales HSV saturation instead), hue
rotates by U[-d, d] of a full turn; the result is clamped back to [-1, 1].

Every random number comes from the caller's generator, drawn on the generator's device,
so results do not depend on the data's device. Drawing and applying are separate
(``draw`` -> ``AugmentDraws`` -> ``apply``): the stream draws a batch's numbers where its
generator lives and the batch is augmented wherever it is formed (a loader worker or the
device); ``__call__`` does both.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

DS_KEYS = (
    "ds_crop",
    "ds_flip_left_right",
    "ds_area_range_min",
    "ds_aspect_ratio_range_min",
    "ds_brightness_delta",
    "ds_contrast_delta",
    "ds_saturation_delta",
    "ds_hue_delta",
)
_IGNORED_DS_KEYS = ("ds_image_size",)
_CROP_TRIES = 10
_LUMA = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = (
    (0.299, 0.587, 0.114),
    (0.595716, -0.274453, -0.321263),
    (0.211456, -0.522591, 0.311135),
)


@dataclass(frozen=True)
class AugmentDraws:
    """One batch's random numbers: crop boxes [B, 4], flips [B] (bool), and the raw
    uniforms [B] of each enabled colour jitter (None where that augmentation is off)."""

    boxes: torch.Tensor | None = None
    flips: torch.Tensor | None = None
    brightness: torch.Tensor | None = None
    contrast: torch.Tensor | None = None
    saturation: torch.Tensor | None = None
    hue: torch.Tensor | None = None


class Augmenter:
    """Applies the augmentation that a mapping of ``ds_*`` hparams describes (missing = off).

    ``ds_area_range_min`` / ``ds_aspect_ratio_range_min`` default to the paper's 0.05 / 0.75
    when ``ds_crop`` is on. Keys other than ``ds_*`` are ignored; unknown ``ds_*`` keys raise.
    """

    def __init__(self, hparams: Mapping[str, object]) -> None:
        unknown = sorted(
            k
            for k in hparams
            if k.startswith("ds_") and k not in DS_KEYS and k not in _IGNORED_DS_KEYS
        )
        if unknown:
            raise ValueError(f"unknown data hyperparameters {unknown} (known: {list(DS_KEYS)})")
        self.crop = _flag(hparams, "ds_crop")
        self.flip_left_right = _flag(hparams, "ds_flip_left_right")
        self.area_range_min = _number(hparams, "ds_area_range_min", 0.05, 1e-6, 1.0)
        self.aspect_ratio_range_min = _number(hparams, "ds_aspect_ratio_range_min", 0.75, 1e-6, 1.0)
        self.brightness_delta = _number(hparams, "ds_brightness_delta", 0.0, 0.0, 1.0)
        self.contrast_delta = _number(hparams, "ds_contrast_delta", 0.0, 0.0, 1.0)
        self.saturation_delta = _number(hparams, "ds_saturation_delta", 0.0, 0.0, 1.0)
        self.hue_delta = _number(hparams, "ds_hue_delta", 0.0, 0.0, 0.5)

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"Augmenter({fields})"

    @property
    def is_identity(self) -> bool:
        """True when every augmentation is off (``__call__`` returns its input)."""
        return not (self.crop or self.flip_left_right or self._colour)

    @property
    def _colour(self) -> bool:
        return any(
            d > 0
            for d in (
                self.brightness_delta,
                self.contrast_delta,
                self.saturation_delta,
                self.hue_delta,
            )
        )

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Augment a batch [B, 3, S, S] of values in [-1, 1]; same shape, dtype, device."""
        _check_batch(x)
        if self.is_identity or x.shape[0] == 0:
            return x
        return self.apply(x, self.draw(x.shape[0], generator))

    def draw(self, batch: int, generator: torch.Generator) -> AugmentDraws:
        """The random numbers of one batch of ``batch`` images, in a fixed order: crop
        boxes, flips, then brightness, contrast, saturation and hue uniforms."""
        if self.is_identity or batch == 0:
            return AugmentDraws()
        boxes = self.sample_boxes(batch, generator) if self.crop else None
        flips = self._uniform(batch, generator) < 0.5 if self.flip_left_right else None

        def jitter(delta: float) -> torch.Tensor | None:
            return self._uniform(batch, generator) if delta > 0 else None

        return AugmentDraws(
            boxes,
            flips,
            jitter(self.brightness_delta),
            jitter(self.contrast_delta),
            jitter(self.saturation_delta),
            jitter(self.hue_delta),
        )

    def apply(self, x: torch.Tensor, draws: AugmentDraws) -> torch.Tensor:
        """Augment a batch [B, 3, S, S] in [-1, 1] with ``draws`` (same shape, dtype, device)."""
        _check_batch(x)
        if self.is_identity or x.shape[0] == 0:
            return x
        if draws.boxes is not None:
            x = self._crop(x, draws.boxes, draws.flips)
        elif draws.flips is not None:
            x = torch.where(draws.flips.to(x.device)[:, None, None, None], x.flip(-1), x)
        if self._colour:
            x = self._jitter(x, draws)
        return x

    def sample_boxes(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Crop boxes [B, 4] as (x0, y0, width, height) fractions of the image, inside [0, 1]."""
        shape = (batch, _CROP_TRIES)
        area = self.area_range_min + (1.0 - self.area_range_min) * self._uniform(shape, generator)
        log_ar = math.log(self.aspect_ratio_range_min)
        ratio = torch.exp(log_ar + (-2.0 * log_ar) * self._uniform(shape, generator))
        width, height = torch.sqrt(area * ratio), torch.sqrt(area / ratio)
        valid = (width <= 1.0) & (height <= 1.0)
        first = valid.to(torch.int64).argmax(dim=1, keepdim=True)
        found = valid.any(dim=1)
        whole = torch.ones_like(area[:, 0])
        width = torch.where(found, width.gather(1, first)[:, 0], whole)
        height = torch.where(found, height.gather(1, first)[:, 0], whole)
        x0 = (1.0 - width) * self._uniform(batch, generator)
        y0 = (1.0 - height) * self._uniform(batch, generator)
        return torch.stack([x0, y0, width, height], dim=1)

    @staticmethod
    def _uniform(shape: int | tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        size = (shape,) if isinstance(shape, int) else shape
        return torch.rand(size, generator=generator, device=generator.device)

    @staticmethod
    def _crop(x: torch.Tensor, boxes: torch.Tensor, flips: torch.Tensor | None) -> torch.Tensor:
        boxes = boxes.to(device=x.device, dtype=x.dtype)
        x0, y0, width, height = boxes.unbind(dim=1)
        scale_x = width if flips is None else torch.where(flips.to(x.device), -width, width)
        theta = torch.zeros((x.shape[0], 2, 3), dtype=x.dtype, device=x.device)
        theta[:, 0, 0] = scale_x
        theta[:, 0, 2] = 2.0 * x0 + width - 1.0
        theta[:, 1, 1] = height
        theta[:, 1, 2] = 2.0 * y0 + height - 1.0
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _jitter(self, x: torch.Tensor, draws: AugmentDraws) -> torch.Tensor:
        def scaled(u: torch.Tensor | None, delta: float) -> torch.Tensor:
            # U[-delta, delta] per image, [B, 1, 1, 1]
            assert u is not None
            u = u.to(device=x.device, dtype=x.dtype)
            return ((2.0 * u - 1.0) * delta)[:, None, None, None]

        y = (x + 1.0) * 0.5
        if self.brightness_delta > 0:
            y = y + scaled(draws.brightness, self.brightness_delta)
        if self.contrast_delta > 0:
            mean = y.mean(dim=(2, 3), keepdim=True)
            y = (y - mean) * (1.0 + scaled(draws.contrast, self.contrast_delta)) + mean
        if self.saturation_delta > 0:
            luma = torch.tensor(_LUMA, dtype=x.dtype, device=x.device)[None, :, None, None]
            gray = (y * luma).sum(dim=1, keepdim=True)
            y = (y - gray) * (1.0 + scaled(draws.saturation, self.saturation_delta)) + gray
        if self.hue_delta > 0:
            angle = scaled(draws.hue, self.hue_delta)[:, 0, 0, 0] * (2.0 * math.pi)
            y = _rotate_hue(y, angle)
        return (y.clamp(0.0, 1.0) * 2.0 - 1.0).contiguous()


def _check_batch(x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a batch [B, 3, S, S], got shape {tuple(x.shape)}")


def _rotate_hue(y: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate the chroma (I, Q) plane of each image [B, 3, H, W] by ``angle`` [B] radians."""
    to_yiq = torch.tensor(_RGB_TO_YIQ, dtype=y.dtype, device=y.device)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros((y.shape[0], 3, 3), dtype=y.dtype, device=y.device)
    rot[:, 0, 0] = 1.0
    rot[:, 1, 1], rot[:, 1, 2] = cos, -sin
    rot[:, 2, 1], rot[:, 2, 2] = sin, cos
    matrix = torch.linalg.inv(to_yiq) @ rot @ to_yiq
    return torch.einsum("bij,bjhw->bihw", matrix, y)


def _flag(hparams: Mapping[str, object], key: str) -> bool:
    value = hparams.get(key, False)
    if isinstance(value, np.bool_):
        value = bool(value)
    if not isinstance(value, bool):
        raise ValueError(f"{key}={value!r}: must be true or false")
    return value


def _number(
    hparams: Mapping[str, object], key: str, default: float, low: float, high: float
) -> float:
    value = hparams.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ValueError(f"{key}={value!r}: must be a number in [{low}, {high}]")
    return float(value)
