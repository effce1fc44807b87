"""Convert Google ViT / big_vision (Flax) checkpoint arrays to timm names and torch layout.

Accepted block layouts: the original vision_transformer names (``MultiHeadDotProductAttention_1``,
``LayerNorm_2``, ``MlpBlock_3``), big_vision names (``MultiHeadDotProductAttention_0``,
``LayerNorm_1``, ``MlpBlock_0``), and big_vision's ``scan`` layout where all blocks are stacked
under ``Transformer/encoderblock/...`` with a leading depth axis. Each source array is checked
against its expected Google-layout shape, so errors name the key as it is in the file.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from mutask.trainer.evolution.architecture import ViTShape
from mutask.trainer.models.errors import CheckpointError

Flat = dict[str, tuple[Tensor, str]]
_T = "Transformer"
_POS_KEYS = (f"{_T}/posembed_input/pos_embedding", "pos_embedding")


class _Reader:
    """Shape-checked access to the raw arrays of one file."""

    def __init__(self, raw: dict[str, Tensor], path: str | os.PathLike[str]) -> None:
        self.raw, self.path = raw, path

    def take(self, key: str, expected: tuple[int, ...], index: int | None = None) -> Tensor:
        if key not in self.raw:
            raise CheckpointError(self.path, key, "missing")
        value = self.raw[key]
        shown = key
        if index is not None:  # scan layout: [depth, ...]
            if value.ndim == 0 or value.shape[0] <= index:
                raise CheckpointError(self.path, key, f"has no block {index} on axis 0")
            value, shown = value[index], f"{key}[{index}]"
        if tuple(value.shape) != expected:
            raise CheckpointError(
                self.path, shown, f"expected shape {list(expected)}, found {list(value.shape)}"
            )
        return value


def depth(raw: dict[str, Tensor]) -> int:
    """Number of consecutive blocks from 0 in the file (either block layout)."""
    stacked = raw.get(f"{_T}/encoderblock/LayerNorm_0/scale")
    if stacked is not None and stacked.ndim == 2:
        return int(stacked.shape[0])
    n = 0
    while f"{_T}/encoderblock_{n}/LayerNorm_0/scale" in raw:
        n += 1
    return n


def _block(r: _Reader, i: int, shape: ViTShape) -> dict[str, Tensor]:
    """timm-named, torch-layout tensors of block i (keys relative to ``blocks.{i}.``)."""
    d, h, m = shape.hidden, shape.heads, shape.mlp
    dh = d // h
    prefix, index = f"{_T}/encoderblock_{i}", None
    if f"{prefix}/LayerNorm_0/scale" not in r.raw:
        prefix, index = f"{_T}/encoderblock", i

    def has(sub: str) -> bool:
        return f"{prefix}/{sub}" in r.raw

    attn = "MultiHeadDotProductAttention_1"
    if not has(f"{attn}/query/kernel"):
        attn = "MultiHeadDotProductAttention_0"
    ln2 = "LayerNorm_2" if has("LayerNorm_2/scale") else "LayerNorm_1"
    mlp = "MlpBlock_3" if has("MlpBlock_3/Dense_0/kernel") else "MlpBlock_0"

    def take(sub: str, expected: tuple[int, ...]) -> Tensor:
        return r.take(f"{prefix}/{sub}", expected, index)

    # Flax q/k/v kernels are [D_in, heads, head_dim]; timm's fused qkv is [3 * D_out, D_in].
    qkv = ("query", "key", "value")
    qkv_w = [take(f"{attn}/{p}/kernel", (d, h, dh)).reshape(d, d).t() for p in qkv]
    qkv_b = [take(f"{attn}/{p}/bias", (h, dh)).reshape(d) for p in qkv]
    return {
        "norm1.weight": take("LayerNorm_0/scale", (d,)),
        "norm1.bias": take("LayerNorm_0/bias", (d,)),
        "attn.qkv.weight": torch.cat(qkv_w),
        "attn.qkv.bias": torch.cat(qkv_b),
        "attn.proj.weight": take(f"{attn}/out/kernel", (h, dh, d)).reshape(d, d).t(),
        "attn.proj.bias": take(f"{attn}/out/bias", (d,)),
        "norm2.weight": take(f"{ln2}/scale", (d,)),
        "norm2.bias": take(f"{ln2}/bias", (d,)),
        "mlp.fc1.weight": take(f"{mlp}/Dense_0/kernel", (d, m)).t(),
        "mlp.fc1.bias": take(f"{mlp}/Dense_0/bias", (m,)),
        "mlp.fc2.weight": take(f"{mlp}/Dense_1/kernel", (m, d)).t(),
        "mlp.fc2.bias": take(f"{mlp}/Dense_1/bias", (d,)),
    }


def to_timm(raw: dict[str, Tensor], shape: ViTShape, path: str | os.PathLike[str]) -> Flat:
    """Flat timm-named dict (value, source key) of a Google-layout checkpoint.

    Only ``shape.depth`` blocks are converted (fewer in the file raise). The position embedding
    is passed through unchanged (the caller fits its grid); the head is converted only when
    there is no ``pre_logits`` layer, since our head reads the class token directly.
    """
    r = _Reader(raw, path)
    d, p, c = shape.hidden, shape.patch, shape.channels
    n = depth(raw)
    if n < shape.depth:
        raise CheckpointError(
            path, f"{_T}/encoderblock_{n}", f"checkpoint has {n} blocks, shape needs {shape.depth}"
        )
    out: Flat = {}
    kernel = r.take("embedding/kernel", (p, p, c, d))
    out["patch_embed.proj.weight"] = (kernel.permute(3, 2, 0, 1), "embedding/kernel")
    out["patch_embed.proj.bias"] = (r.take("embedding/bias", (d,)), "embedding/bias")
    if "cls" in raw:
        out["cls_token"] = (r.take("cls", (1, 1, d)), "cls")
    pos_key = next((k for k in _POS_KEYS if k in raw), None)
    if pos_key is None:
        raise CheckpointError(path, _POS_KEYS[0], f"missing (nor {_POS_KEYS[1]!r})")
    out["pos_embed"] = (raw[pos_key], pos_key)
    for i in range(shape.depth):
        for key, value in _block(r, i, shape).items():
            out[f"blocks.{i}.{key}"] = (value, f"{_T}/encoderblock_{i}")
    for ours, theirs in (("weight", "scale"), ("bias", "bias")):
        key = f"{_T}/encoder_norm/{theirs}"
        out[f"norm.{ours}"] = (r.take(key, (d,)), key)
    head = raw.get("head/kernel")
    if head is not None and head.ndim == 2 and not any(k.startswith("pre_logits") for k in raw):
        k = head.shape[1]
        out["head.weight"] = (r.take("head/kernel", (d, k)).t(), "head/kernel")
        out["head.bias"] = (r.take("head/bias", (k,)), "head/bias")
    return out
