"""Component names, parameter counts and FLOPs of the torch-free ViT description."""

from __future__ import annotations

import pytest

from mutask.trainer.evolution import ViTShape, architecture
from mutask.trainer.evolution.architecture import (
    adapter_index,
    adapter_name,
    block_index,
    block_name,
)

VIT_L16 = ViTShape(hidden=1024, depth=24, heads=16, mlp=4096, patch=16, image_size=224)


def test_architecture_orders_components_with_adapters_before_their_block() -> None:
    assert architecture(2, {1}) == [
        "embedding",
        "cls",
        "posembed_input",
        "encoderblock_0",
        "residual_adapter_1",
        "encoderblock_1",
        "encoder_norm",
        "head",
    ]


def test_architecture_ignores_adapters_beyond_the_depth() -> None:
    assert "residual_adapter_3" not in architecture(2, {3})


def test_block_and_adapter_names_round_trip() -> None:
    assert block_index(block_name(11)) == 11
    assert adapter_index(adapter_name(4)) == 4
    assert block_index("residual_adapter_1") is None
    assert adapter_index("encoderblock_1") is None
    assert block_index("encoderblock_x") is None


def test_tokens_count_patches_plus_the_class_token(shape: ViTShape) -> None:
    assert shape.tokens == (8 // 4) ** 2 + 1


@pytest.mark.parametrize(
    ("name", "kwargs", "expected"),
    [
        ("embedding", {}, 4 * 4 * 3 * 8 + 8),
        ("cls", {}, 8),
        ("posembed_input", {}, 5 * 8),
        ("encoder_norm", {}, 2 * 8),
        ("head", {"num_classes": 10}, 8 * 10 + 10),
        # 2 LayerNorms, qkv, attention out, MLP in and out
        ("encoderblock_0", {}, 2 * 16 + (8 * 24 + 24) + (8 * 8 + 8) + (8 * 16 + 16 + 16 * 8 + 8)),
        # LayerNorm, down projection, up projection
        ("residual_adapter_2", {"adapter_dim": 4}, 16 + (8 * 4 + 4) + (4 * 8 + 8)),
    ],
)
def test_component_params(shape: ViTShape, name: str, kwargs: dict, expected: int) -> None:
    assert shape.component_params(name, **kwargs) == expected


def test_vit_l16_root_has_the_papers_parameter_count() -> None:
    # The spec's 303,303,682: ViT-L/16 at 224 px with the reference's 2-class head.
    names = architecture(24, set())
    total = sum(VIT_L16.component_params(n, num_classes=2) for n in names)
    assert total == 303_303_682


def test_unknown_component_name_is_rejected(shape: ViTShape) -> None:
    with pytest.raises(ValueError, match="unknown component"):
        shape.component_params("decoder")
    with pytest.raises(ValueError, match="unknown component"):
        shape.component_flops("decoder")


def test_flops_are_positive_and_grow_with_classes_and_adapter_dim(shape: ViTShape) -> None:
    for name in architecture(2, {0}):
        assert shape.component_flops(name, num_classes=3, adapter_dim=4) > 0
    assert shape.component_flops("head", num_classes=20) == 2 * shape.component_flops(
        "head", num_classes=10
    )
    small = shape.component_flops("residual_adapter_0", adapter_dim=4)
    assert shape.component_flops("residual_adapter_0", adapter_dim=8) > small


def test_shape_rejects_hidden_not_divisible_by_heads() -> None:
    with pytest.raises(ValueError, match="heads"):
        ViTShape(hidden=10, depth=1, heads=3, mlp=4, patch=2, image_size=4)


def test_shape_rejects_image_not_divisible_by_patch() -> None:
    with pytest.raises(ValueError, match="patch"):
        ViTShape(hidden=8, depth=1, heads=2, mlp=4, patch=3, image_size=8)
