"""The module of every µ2Net ViT component kind, each a tensor-to-tensor map with seeded init.

Parameter names follow timm's ``VisionTransformer`` so that :func:`~.checkpoints.timm_key` is a
plain prefix map. Constructors take ``device="meta"`` to build shape-only modules; otherwise they
initialise themselves (``generator`` is the only source of randomness of ``reset_parameters``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LN_EPS = 1e-6
INIT_STD = 0.02

# --------------------------------------------------------------------------- init helpers

Device = torch.device | str | None


def _trunc_normal(t: Tensor, std: float, generator: torch.Generator | None) -> None:
    with torch.no_grad():
        nn.init.trunc_normal_(t, std=std, a=-2 * std, b=2 * std, generator=generator)


def _init_linear(layer: nn.Linear, generator: torch.Generator | None) -> None:
    _trunc_normal(layer.weight, INIT_STD, generator)
    nn.init.zeros_(layer.bias)


def _init_norm(norm: nn.LayerNorm) -> None:
    nn.init.ones_(norm.weight)
    nn.init.zeros_(norm.bias)


class Component(nn.Module):
    """Base of all component modules: a tensor-to-tensor map with a seeded re-init."""

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-initialise every parameter, drawing randomness only from ``generator``."""
        raise NotImplementedError

    def _finish_init(self, device: Device, generator: torch.Generator | None) -> None:
        if torch.device(device or "cpu").type != "meta":
            self.reset_parameters(generator)


# --------------------------------------------------------------------------- components


class PatchEmbedding(Component):
    """``embedding``: images [B, C, H, W] -> patch tokens [B, (H/P)*(W/P), D]."""

    def __init__(
        self,
        channels: int,
        hidden: int,
        patch: int,
        *,
        generator: torch.Generator | None = None,
        device: Device = None,
    ) -> None:
        super().__init__()
        self.channels, self.hidden, self.patch = channels, hidden, patch
        self.proj = nn.Conv2d(channels, hidden, patch, stride=patch, device=device)
        self._finish_init(device, generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """LeCun-normal (truncated) conv kernel as in the JAX ViT, zero bias."""
        fan_in = self.channels * self.patch * self.patch
        _trunc_normal(self.proj.weight, 1.0 / math.sqrt(fan_in), generator)
        assert self.proj.bias is not None
        nn.init.zeros_(self.proj.bias)

    def forward(self, images: Tensor) -> Tensor:
        x: Tensor = self.proj(images)
        return x.flatten(2).transpose(1, 2)


class ClassToken(Component):
    """``cls``: prepends a learned token, [B, N-1, D] -> [B, N, D]."""

    def __init__(
        self, hidden: int, *, generator: torch.Generator | None = None, device: Device = None
    ) -> None:
        super().__init__()
        self.hidden = hidden
        self.token = nn.Parameter(torch.empty(1, 1, hidden, device=device))
        self._finish_init(device, generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        _trunc_normal(self.token, INIT_STD, generator)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1)


class PositionEmbedding(Component):
    """``posembed_input``: adds a learned [1, N, D] position embedding (class token first)."""

    def __init__(
        self,
        tokens: int,
        hidden: int,
        *,
        generator: torch.Generator | None = None,
        device: Device = None,
    ) -> None:
        super().__init__()
        self.tokens, self.hidden = tokens, hidden
        self.pos = nn.Parameter(torch.empty(1, tokens, hidden, device=device))
        self._finish_init(device, generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        _trunc_normal(self.pos, INIT_STD, generator)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.pos


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (timm layout)."""

    def __init__(self, hidden: int, heads: int, *, device: Device = None) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden, device=device)
        self.proj = nn.Linear(hidden, hidden, device=device)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        y: Tensor = self.proj(out.transpose(1, 2).reshape(b, n, d))
        return y


class Mlp(nn.Module):
    """Linear -> exact GELU -> Linear."""

    def __init__(self, hidden: int, mlp: int, *, device: Device = None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(hidden, mlp, device=device)
        self.fc2 = nn.Linear(mlp, hidden, device=device)

    def forward(self, x: Tensor) -> Tensor:
        y: Tensor = self.fc2(F.gelu(self.fc1(x)))
        return y


class EncoderBlock(Component):
    """``encoderblock_i``: pre-LN transformer block, [B, N, D] -> [B, N, D]."""

    def __init__(
        self,
        hidden: int,
        heads: int,
        mlp: int,
        *,
        generator: torch.Generator | None = None,
        device: Device = None,
    ) -> None:
        super().__init__()
        self.hidden, self.heads, self.mlp_dim = hidden, heads, mlp
        self.norm1 = nn.LayerNorm(hidden, eps=LN_EPS, device=device)
        self.attn = Attention(hidden, heads, device=device)
        self.norm2 = nn.LayerNorm(hidden, eps=LN_EPS, device=device)
        self.mlp = Mlp(hidden, mlp, device=device)
        self._finish_init(device, generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        _init_norm(self.norm1)
        _init_norm(self.norm2)
        for layer in (self.attn.qkv, self.attn.proj, self.mlp.fc1, self.mlp.fc2):
            _init_linear(layer, generator)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        y: Tensor = x + self.mlp(self.norm2(x))
        return y


class ResidualAdapter(Component):
    """``residual_adapter_i``: ``x + up(gelu(down(LN(x))))``; ``up`` is zero so it starts as id."""

    def __init__(
        self,
        hidden: int,
        adapter_dim: int,
        *,
        generator: torch.Generator | None = None,
        device: Device = None,
    ) -> None:
        super().__init__()
        self.hidden, self.adapter_dim = hidden, adapter_dim
        self.norm = nn.LayerNorm(hidden, eps=LN_EPS, device=device)
        self.down = nn.Linear(hidden, adapter_dim, device=device)
        self.up = nn.Linear(adapter_dim, hidden, device=device)
        self._finish_init(device, generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        _init_norm(self.norm)
        _init_linear(self.down, generator)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor) -> Tensor:
        y: Tensor = self.up(F.gelu(self.down(self.norm(x))))
        return x + y


class EncoderNorm(Component):
    """``encoder_norm``: the final LayerNorm, [B, N, D] -> [B, N, D]."""

    def __init__(
        self, hidden: int, *, generator: torch.Generator | None = None, device: Device = None
    ) -> None:
        super().__init__()
        self.hidden = hidden
        self.weight = nn.Parameter(torch.empty(hidden, device=device))
        self.bias = nn.Parameter(torch.empty(hidden, device=device))
        self._finish_init(device, generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        nn.init.ones_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, (self.hidden,), self.weight, self.bias, LN_EPS)


class Head(Component):
    """``head``: zero-initialised Dense on the class token, [B, N, D] (or [B, D]) -> [B, K]."""

    def __init__(
        self,
        hidden: int,
        num_classes: int,
        *,
        generator: torch.Generator | None = None,
        device: Device = None,
    ) -> None:
        super().__init__()
        self.hidden, self.num_classes = hidden, num_classes
        self.weight = nn.Parameter(torch.empty(num_classes, hidden, device=device))
        self.bias = nn.Parameter(torch.empty(num_classes, device=device))
        self._finish_init(device, generator)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x[:, 0] if x.ndim == 3 else x, self.weight, self.bias)
