"""ViT architecture arithmetic: component names, parameter counts and FLOPs, without torch.

The µ2Net core reasons about components by name and size only; the torch modules that hold
the actual tensors live in :mod:`mutask.trainer.models.vit`, which builds them from the same
:class:`ViTShape`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

EMBEDDING = "embedding"
CLS = "cls"
POSEMBED = "posembed_input"
ENCODER_NORM = "encoder_norm"
HEAD = "head"
_BLOCK = re.compile(r"^encoderblock_(\d+)$")
_ADAPTER = re.compile(r"^residual_adapter_(\d+)$")


def block_name(i: int) -> str:
    """Name of the i-th transformer block component."""
    return f"encoderblock_{i}"


def adapter_name(i: int) -> str:
    """Name of the residual adapter that runs before block i."""
    return f"residual_adapter_{i}"


def block_index(name: str) -> int | None:
    """The block index of an ``encoderblock_i`` name, else None."""
    m = _BLOCK.match(name)
    return int(m.group(1)) if m else None


def adapter_index(name: str) -> int | None:
    """The block index of a ``residual_adapter_i`` name, else None."""
    m = _ADAPTER.match(name)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class ViTShape:
    """The fixed dimensions of every path in one system (only depth and adapters vary)."""

    hidden: int
    depth: int
    heads: int
    mlp: int
    patch: int
    image_size: int
    channels: int = 3

    def __post_init__(self) -> None:
        if self.hidden % self.heads:
            raise ValueError(f"hidden={self.hidden} is not divisible by heads={self.heads}")
        if self.image_size % self.patch:
            raise ValueError(f"image_size={self.image_size} is not divisible by patch={self.patch}")

    @property
    def tokens(self) -> int:
        """Sequence length including the class token."""
        return (self.image_size // self.patch) ** 2 + 1

    def component_params(self, name: str, *, num_classes: int = 0, adapter_dim: int = 0) -> int:
        """Number of parameters of the named component."""
        d = self.hidden
        if name == EMBEDDING:
            return self.patch * self.patch * self.channels * d + d
        if name == CLS:
            return d
        if name == POSEMBED:
            return self.tokens * d
        if name == ENCODER_NORM:
            return 2 * d
        if name == HEAD:
            return d * num_classes + num_classes
        if block_index(name) is not None:
            attn = 3 * d * d + 3 * d + d * d + d
            mlp = d * self.mlp + self.mlp + self.mlp * d + d
            return attn + mlp + 4 * d
        if adapter_index(name) is not None:
            return 2 * d + d * adapter_dim + adapter_dim + adapter_dim * d + d
        raise ValueError(f"unknown component name {name!r}")

    def component_flops(self, name: str, *, num_classes: int = 0, adapter_dim: int = 0) -> int:
        """Approximate forward FLOPs (2 per multiply-add) of one component for one image."""
        d, n = self.hidden, self.tokens
        if name == EMBEDDING:
            return 2 * (n - 1) * self.patch * self.patch * self.channels * d
        if name in (CLS, POSEMBED):
            return n * d
        if name == ENCODER_NORM:
            return 5 * n * d
        if name == HEAD:
            return 2 * d * num_classes
        if block_index(name) is not None:
            proj = 2 * n * (4 * d * d + 2 * d * self.mlp)
            attn = 2 * 2 * n * n * d
            return proj + attn + 10 * n * d
        if adapter_index(name) is not None:
            return 2 * n * 2 * d * adapter_dim + 5 * n * d
        raise ValueError(f"unknown component name {name!r}")


def architecture(num_layers: int, adapters: frozenset[int] | set[int]) -> list[str]:
    """Ordered component names of a path with ``num_layers`` blocks and the given adapters."""
    names = [EMBEDDING, CLS, POSEMBED]
    for i in range(num_layers):
        if i in adapters:
            names.append(adapter_name(i))
        names.append(block_name(i))
    names += [ENCODER_NORM, HEAD]
    return names
