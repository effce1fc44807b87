"""Decode one encoded image (JPEG, PNG, ...) with Pillow into uint8 [H, W, C], C = 1 or 3.

Grayscale stays one channel and RGB three; every other mode is converted (palette, alpha,
CMYK, 1-bit to RGB or grayscale; 16/32-bit and float grayscale scaled to 8 bits) and the
caller is told the original mode so it can log the conversion once. An image Pillow cannot
read, or a truncated one, raises ``DatasetError`` naming the file.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from mutask.trainer.data.errors import DatasetError

FIELD = "dataset.source"
NATIVE_MODES = ("L", "RGB")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm")
_TO_GRAY = ("1", "LA", "La", "I;16", "I;16B", "I;16L", "I", "F")


def target_mode(mode: str) -> str:
    """The mode an image of Pillow mode ``mode`` is decoded to: ``L`` or ``RGB``."""
    if mode == "L" or mode.startswith("I") or mode in _TO_GRAY:
        return "L"
    return "RGB"


def conversions(modes: dict[str, str]) -> dict[str, tuple[str, str]]:
    """Which of a batch's image modes (mode -> first file) were converted, and to what:
    every non-native mode, and grayscale when it sits in a batch with colour images."""
    out = {m: (target_mode(m), where) for m, where in modes.items() if m not in NATIVE_MODES}
    targets = {target_mode(m) for m in modes}
    if targets == {"L", "RGB"}:
        out.update({m: ("RGB", where) for m, where in modes.items() if target_mode(m) == "L"})
    return out


def is_image_name(name: str) -> bool:
    """Whether a file name has one of the image extensions (case-insensitive)."""
    return name.lower().endswith(IMAGE_EXTENSIONS)


def decode_image(data: bytes, where: str, *, task: str = "?", source: str = "") -> np.ndarray:
    """Decode ``data`` (the bytes of file ``where``); see the module doc."""
    image, _ = decode_with_mode(data, where, task=task, source=source)
    return image


def decode_with_mode(
    data: bytes, where: str, *, task: str = "?", source: str = ""
) -> tuple[np.ndarray, str]:
    """The decoded uint8 [H, W, C] image and the file's original Pillow mode."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                mode = im.mode
                array = _to_array(im)
    except (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombWarning) as err:
        raise DatasetError(
            task,
            FIELD,
            source or where,
            f"cannot decode image {where}: {type(err).__name__}: {err}",
        ) from err
    if array.ndim != 3 or array.shape[0] == 0 or array.shape[1] == 0:
        raise DatasetError(task, FIELD, source or where, f"image {where} is empty")
    return array, mode


def _to_array(im: Image.Image) -> np.ndarray:
    mode = im.mode
    if mode == "L":
        return np.asarray(im, dtype=np.uint8)[..., None]
    if mode == "RGB":
        return np.asarray(im, dtype=np.uint8)
    if mode.startswith("I") or mode == "F":
        values = np.asarray(im)
        if mode.startswith("I;16") or (mode == "I" and values.size and values.max() > 255):
            values = values.astype(np.float64) / 257.0  # 0..65535 -> 0..255
        gray: np.ndarray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return gray[..., None]
    if mode in _TO_GRAY:
        return np.asarray(im.convert("L"), dtype=np.uint8)[..., None]
    return np.asarray(im.convert("RGB"), dtype=np.uint8)
