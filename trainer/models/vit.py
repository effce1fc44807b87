"""The µ2Net ViT in torch: the preset registry, the component factory and PathModel.

A path's model is a plain single-task ViT whose components are *references* into the shared
pool (see ``mu2net-spec.md``, "Model representation"). Components are built from the same
:class:`~mutask.trainer.evolution.architecture.ViTShape` whose arithmetic the µ2Net core uses,
so ``sum(p.numel())`` of a built component always equals ``shape.component_params(name)``.

The component module classes live in :mod:`.components` and are re-exported here. Every
component maps a tensor to a tensor, which is what lets :class:`PathModel` split its forward
pass anywhere (see :meth:`PathModel.forward_until`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from mutask.trainer.evolution.architecture import (
    CLS,
    EMBEDDING,
    ENCODER_NORM,
    HEAD,
    POSEMBED,
    ViTShape,
    adapter_index,
    architecture,
    block_index,
)
from mutask.trainer.models.components import (
    ClassToken,
    Component,
    Device,
    EncoderBlock,
    EncoderNorm,
    Head,
    PatchEmbedding,
    PositionEmbedding,
    ResidualAdapter,
)

__all__ = [
    "STEM_LENGTH",
    "ClassToken",
    "Component",
    "EncoderBlock",
    "EncoderNorm",
    "Head",
    "PatchEmbedding",
    "PathModel",
    "PositionEmbedding",
    "ResidualAdapter",
    "build_component",
    "get_shape",
    "list_presets",
    "register_preset",
]

STEM_LENGTH = 3
"""The stem is the first three components of every path: embedding, cls, posembed_input."""

PresetFn = Callable[[int], ViTShape]
_PRESETS: dict[str, PresetFn] = {}


# --------------------------------------------------------------------------- presets


def register_preset(name: str) -> Callable[[PresetFn], PresetFn]:
    """Decorator registering ``fn(image_size) -> ViTShape`` under ``name``."""

    def deco(fn: PresetFn) -> PresetFn:
        if name in _PRESETS:
            raise ValueError(f"ViT preset {name!r} is already registered")
        _PRESETS[name] = fn
        return fn

    return deco


def get_shape(preset: str, image_size: int) -> ViTShape:
    """The :class:`ViTShape` of a registered preset at the given image size."""
    try:
        fn = _PRESETS[preset]
    except KeyError:
        raise ValueError(
            f"unknown ViT preset {preset!r}; known presets: {', '.join(list_presets())}"
        ) from None
    return fn(image_size)


def list_presets() -> list[str]:
    """Names of all registered presets, sorted."""
    return sorted(_PRESETS)


@register_preset("mu-tiny")
def mu_tiny(image_size: int) -> ViTShape:
    """Toy size (4 px patches) for CPU tests and demos."""
    return ViTShape(hidden=64, depth=4, heads=4, mlp=128, patch=4, image_size=image_size)


@register_preset("mu-small")
def mu_small(image_size: int) -> ViTShape:
    """Small model with 4 px patches for low-resolution images."""
    return ViTShape(hidden=128, depth=6, heads=4, mlp=256, patch=4, image_size=image_size)


@register_preset("ti16")
def vit_ti16(image_size: int) -> ViTShape:
    """ViT-Ti/16."""
    return ViTShape(hidden=192, depth=12, heads=3, mlp=768, patch=16, image_size=image_size)


@register_preset("s16")
def vit_s16(image_size: int) -> ViTShape:
    """ViT-S/16."""
    return ViTShape(hidden=384, depth=12, heads=6, mlp=1536, patch=16, image_size=image_size)


@register_preset("b16")
def vit_b16(image_size: int) -> ViTShape:
    """ViT-B/16."""
    return ViTShape(hidden=768, depth=12, heads=12, mlp=3072, patch=16, image_size=image_size)


@register_preset("l16")
def vit_l16(image_size: int) -> ViTShape:
    """ViT-L/16."""
    return ViTShape(hidden=1024, depth=24, heads=16, mlp=4096, patch=16, image_size=image_size)


# --------------------------------------------------------------------------- factory


def build_component(
    name: str,
    shape: ViTShape,
    *,
    num_classes: int = 0,
    adapter_dim: int = 0,
    generator: torch.Generator | None = None,
    device: Device = None,
) -> Component:
    """Build and initialise the named component (names as in ``architecture()``).

    Random draws come from ``generator`` (a CPU generator) only; the global RNG is untouched
    when one is given. Weights are always drawn on the CPU and then moved to ``device``, so
    equal seeds give bit-equal weights on every device. ``head`` needs ``num_classes >= 1``
    and ``residual_adapter_i`` needs ``adapter_dim >= 1``. ``device="meta"`` builds an
    uninitialised shape-only module (no memory, no RNG draws).
    """
    module = _construct(name, shape, num_classes, adapter_dim, device="meta")
    target = torch.device(device or "cpu")
    if target.type == "meta":
        return module
    module = module.to_empty(device="cpu")
    module.reset_parameters(generator)
    return module if target.type == "cpu" else module.to(target)


def _construct(
    name: str, shape: ViTShape, num_classes: int, adapter_dim: int, device: Device
) -> Component:
    d = shape.hidden
    if name == EMBEDDING:
        return PatchEmbedding(shape.channels, d, shape.patch, device=device)
    if name == CLS:
        return ClassToken(d, device=device)
    if name == POSEMBED:
        return PositionEmbedding(shape.tokens, d, device=device)
    if name == ENCODER_NORM:
        return EncoderNorm(d, device=device)
    if name == HEAD:
        if num_classes < 1:
            raise ValueError(f"component {name!r} needs num_classes >= 1, got {num_classes}")
        return Head(d, num_classes, device=device)
    i = block_index(name)
    if i is not None:
        _check_index(name, i, shape)
        return EncoderBlock(d, shape.heads, shape.mlp, device=device)
    i = adapter_index(name)
    if i is not None:
        _check_index(name, i, shape)
        if adapter_dim < 1:
            raise ValueError(f"component {name!r} needs adapter_dim >= 1, got {adapter_dim}")
        return ResidualAdapter(d, adapter_dim, device=device)
    raise ValueError(f"unknown component name {name!r}")


def _check_index(name: str, i: int, shape: ViTShape) -> None:
    if i >= shape.depth:
        raise ValueError(f"component {name!r} is beyond the shape's depth {shape.depth}")


# --------------------------------------------------------------------------- path model


class PathModel(nn.Module):
    """A single-task ViT made of references to shared component modules.

    ``components`` are ``(name, module)`` pairs in architecture order, i.e. the names must
    equal ``architecture(num_layers, adapters)`` for some depth and adapter set. The modules
    are registered as-is (never copied): a module shared by several PathModels is one object,
    and training it through one path changes the others.

    Split indices: with components ``c[0..n-1]`` (``n = len(model)``), ``forward_until(x, k)``
    runs ``c[0:k]`` and ``forward_from(h, k)`` runs ``c[k:n]``, for any ``0 <= k <= n``, so
    ``forward_from(forward_until(x, k), k)`` is exactly ``forward(x)``. The tensor at split
    ``k`` is: images for ``k == 0``; patch tokens [B, N-1, D] for ``k == 1``; tokens [B, N, D]
    for ``2 <= k <= n - 1`` (without position embedding at ``k == 2``); logits for ``k == n``.
    Splits ``k >= STEM_LENGTH`` (after embedding, cls, posembed_input) are the ones meant for
    caching a frozen prefix; ``index(name)`` gives a component's position.
    """

    def __init__(self, components: Sequence[tuple[str, nn.Module]]) -> None:
        super().__init__()
        names = tuple(name for name, _ in components)
        blocks = [i for i in map(block_index, names) if i is not None]
        adapters = {i for i in map(adapter_index, names) if i is not None}
        expected = architecture(len(blocks), adapters)
        if list(names) != expected:
            raise ValueError(
                f"components are not in architecture order: got {list(names)}, expected {expected}"
            )
        self._names = names
        self._index = {name: i for i, name in enumerate(names)}
        self.components = nn.ModuleList([module for _, module in components])

    @property
    def names(self) -> tuple[str, ...]:
        """Component names in execution order."""
        return self._names

    @property
    def num_layers(self) -> int:
        """Number of transformer blocks."""
        return sum(block_index(n) is not None for n in self._names)

    def __len__(self) -> int:
        return len(self._names)

    def index(self, name: str) -> int:
        """Position of the named component (a valid split index for ``forward_until``)."""
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"no component {name!r} in this path: {list(self._names)}") from None

    def component(self, name: str) -> nn.Module:
        """The (shared) module of the named component."""
        return self.components[self.index(name)]

    def items(self) -> Iterator[tuple[str, nn.Module]]:
        """``(name, module)`` pairs in execution order."""
        return zip(self._names, self.components, strict=True)

    def _run(self, x: Tensor, start: int, stop: int) -> Tensor:
        n = len(self._names)
        if not 0 <= start <= stop <= n:
            raise IndexError(f"split range [{start}:{stop}] is outside [0:{n}]")
        for module in self.components[start:stop]:
            x = module(x)
        return x

    def forward(self, images: Tensor) -> Tensor:
        """Logits [B, num_classes] for images [B, C, H, W]."""
        return self._run(images, 0, len(self._names))

    def forward_until(self, images: Tensor, stop: int) -> Tensor:
        """Run components ``[0:stop]`` on images; see the class docstring for indices."""
        return self._run(images, 0, stop)

    def forward_from(self, x: Tensor, start: int) -> Tensor:
        """Run components ``[start:]`` on the tensor ``forward_until(images, start)`` gave."""
        return self._run(x, start, len(self._names))
