"""Presets, build_component parameter counts, init rules and determinism."""

from __future__ import annotations

import pytest
import torch

from mutask.trainer.evolution.architecture import ViTShape
from mutask.trainer.models import build_component, get_shape, list_presets, register_preset, vit

KINDS = [
    "embedding",
    "cls",
    "posembed_input",
    "encoderblock_0",
    "residual_adapter_0",
    "encoder_norm",
    "head",
]
PRESETS = {
    "mu-tiny": (64, 4, 4, 128, 4),
    "mu-small": (128, 6, 4, 256, 4),
    "ti16": (192, 12, 3, 768, 16),
    "s16": (384, 12, 6, 1536, 16),
    "b16": (768, 12, 12, 3072, 16),
    "l16": (1024, 24, 16, 4096, 16),
}


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_dimensions(preset: str) -> None:
    s = get_shape(preset, 64 if PRESETS[preset][4] == 4 else 224)
    assert (s.hidden, s.depth, s.heads, s.mlp, s.patch) == PRESETS[preset]
    assert s.channels == 3


def test_preset_registry() -> None:
    assert set(PRESETS) <= set(list_presets())
    assert list_presets() == sorted(list_presets())
    with pytest.raises(ValueError, match=r"'nope'.*known presets: .*mu-tiny"):
        get_shape("nope", 32)
    with pytest.raises(ValueError, match="already registered"):
        register_preset("b16")(lambda size: get_shape("b16", size))


def test_register_custom_preset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vit, "_PRESETS", dict(vit._PRESETS))

    @register_preset("odd")
    def odd(image_size: int) -> ViTShape:
        return ViTShape(hidden=24, depth=1, heads=2, mlp=8, patch=2, image_size=image_size)

    assert "odd" in list_presets()
    assert get_shape("odd", 8) == odd(8)


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("kind", KINDS)
def test_param_count_matches_shape(preset: str, kind: str) -> None:
    s = get_shape(preset, 32 if PRESETS[preset][4] == 4 else 64)
    g = torch.Generator().manual_seed(0)
    module = build_component(kind, s, num_classes=7, adapter_dim=12, generator=g)
    count = sum(p.numel() for p in module.parameters())
    assert count == s.component_params(kind, num_classes=7, adapter_dim=12)
    assert all(p.requires_grad and p.dtype == torch.float32 for p in module.parameters())


def test_meta_build_has_shapes_only(shape: ViTShape) -> None:
    module = build_component("encoderblock_1", shape, device="meta")
    assert all(p.is_meta for p in module.parameters())
    assert sum(p.numel() for p in module.parameters()) == shape.component_params("encoderblock_1")


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("bogus", {}, "unknown component"),
        ("head", {}, "num_classes"),
        ("residual_adapter_1", {}, "adapter_dim"),
        ("encoderblock_3", {}, "depth"),
        ("residual_adapter_9", {"adapter_dim": 4}, "depth"),
    ],
)
def test_build_component_rejects(
    shape: ViTShape, name: str, kwargs: dict[str, int], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        build_component(name, shape, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", KINDS)
def test_seeded_init_is_deterministic_and_leaves_global_rng(shape: ViTShape, kind: str) -> None:
    def build(seed: int) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        return build_component(kind, shape, num_classes=3, adapter_dim=4, generator=g).state_dict()

    before = torch.random.get_rng_state()
    a, b, c = build(1), build(1), build(2)
    assert torch.equal(before, torch.random.get_rng_state())
    assert all(torch.equal(a[k], b[k]) for k in a)
    random_kinds = {"embedding", "cls", "posembed_input", "encoderblock_0", "residual_adapter_0"}
    assert any(not torch.equal(a[k], c[k]) for k in a) == (kind in random_kinds)


def test_init_rules() -> None:
    s = ViTShape(hidden=256, depth=1, heads=4, mlp=512, patch=4, image_size=32)
    g = torch.Generator().manual_seed(0)
    block = build_component("encoderblock_0", s, generator=g).state_dict()
    for key in ("attn.qkv.weight", "attn.proj.weight", "mlp.fc1.weight", "mlp.fc2.weight"):
        w = block[key]
        assert w.abs().max() <= 0.04 and abs(w.std().item() - 0.0176) < 0.002  # trunc ±2σ
        assert torch.all(block[key.replace("weight", "bias")] == 0)
    assert torch.all(block["norm1.weight"] == 1) and torch.all(block["norm2.bias"] == 0)
    adapter = build_component("residual_adapter_0", s, adapter_dim=16, generator=g).state_dict()
    assert torch.all(adapter["up.weight"] == 0) and torch.all(adapter["up.bias"] == 0)
    assert adapter["down.weight"].abs().max() > 0
    head = build_component("head", s, num_classes=10, generator=g).state_dict()
    assert torch.all(head["weight"] == 0) and torch.all(head["bias"] == 0)
    emb = build_component("embedding", s, generator=g).state_dict()
    assert abs(emb["proj.weight"].std().item() - 0.88 / (3 * 16) ** 0.5) < 0.02  # lecun, trunc


def test_component_io_shapes(shape: ViTShape) -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randn(2, 3, 16, 16)

    def build(name: str) -> torch.nn.Module:
        return build_component(name, shape, num_classes=6, adapter_dim=8, generator=g)

    patches = build("embedding")(images)
    assert patches.shape == (2, 16, 32)
    tokens = build("cls")(patches)
    assert tokens.shape == (2, 17, 32) and torch.equal(tokens[:, 1:], patches)
    tokens = build("posembed_input")(tokens)
    for name in ("residual_adapter_0", "encoderblock_0", "encoder_norm"):
        assert build(name)(tokens).shape == (2, 17, 32)
    assert torch.equal(build("residual_adapter_2")(tokens), tokens)  # identity at init
    assert build("head")(tokens).shape == (2, 6)
