"""export_state_dict / save_exported / load_exported round trips."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from mutask.trainer.evolution.architecture import ViTShape
from mutask.trainer.models import (
    CheckpointError,
    PathModel,
    export_state_dict,
    exported_metadata,
    load_exported,
    load_root_weights,
    save_exported,
)

BuildPath = Callable[..., PathModel]
Randomize = Callable[[nn.Module, int], None]


@pytest.fixture
def model(build_path: BuildPath, randomize: Randomize) -> PathModel:
    m = build_path(num_layers=2, adapters=frozenset({0, 1}), num_classes=7)
    randomize(m, 11)
    return m


def test_export_uses_timm_names(model: PathModel) -> None:
    sd = export_state_dict(model)
    assert {"patch_embed.proj.weight", "cls_token", "pos_embed", "norm.weight"} <= set(sd)
    assert {"head.weight", "head.bias"} <= set(sd)
    assert "blocks.1.attn.qkv.weight" in sd and "blocks.2.norm1.weight" not in sd
    assert {"adapters.0.down.weight", "adapters.1.up.bias", "adapters.1.norm.weight"} <= set(sd)
    assert len(sd) == sum(len(m.state_dict()) for _, m in model.items())
    # A copy, not the live parameters.
    assert sd["cls_token"].data_ptr() != model.component("cls").state_dict()["token"].data_ptr()


def test_round_trip_is_bit_identical(
    tmp_path: Path, model: PathModel, images: torch.Tensor
) -> None:
    path = tmp_path / "task.safetensors"
    save_exported(model, path, {"task": "cifar", "score": "0.91"})
    loaded = load_exported(path)
    assert loaded.names == model.names
    assert torch.equal(loaded(images), model(images))
    for (name, a), (_, b) in zip(model.items(), loaded.items(), strict=True):
        assert a is not b
        sa, sb = a.state_dict(), b.state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa), name
        assert all(p.requires_grad for p in b.parameters())
    meta = exported_metadata(path)
    assert meta["task"] == "cifar" and meta["score"] == "0.91"
    assert meta["mutask.format"] == "mutask-vit/1"
    assert not list(tmp_path.glob(".export-*"))  # no temp file left behind


def test_export_is_a_loadable_root(tmp_path: Path, model: PathModel, shape: ViTShape) -> None:
    path = tmp_path / "task.safetensors"
    save_exported(model, path, {})
    two = ViTShape(shape.hidden, 2, shape.heads, shape.mlp, shape.patch, shape.image_size)
    weights = load_root_weights(path, two)
    assert torch.equal(weights["encoderblock_1"]["mlp.fc1.bias"],
                       model.component("encoderblock_1").state_dict()["mlp.fc1.bias"])  # fmt: skip
    assert weights["head"]["weight"].shape == (7, shape.hidden)


def test_blockless_path_round_trips(
    tmp_path: Path, build_path: BuildPath, images: torch.Tensor
) -> None:
    model = build_path(num_layers=0)
    save_exported(model, tmp_path / "s.safetensors", {})
    assert torch.equal(load_exported(tmp_path / "s.safetensors")(images), model(images))


def test_reserved_metadata_and_foreign_files(tmp_path: Path, model: PathModel) -> None:
    with pytest.raises(ValueError, match="reserved"):
        save_exported(model, tmp_path / "a.safetensors", {"mutask.shape": "x"})
    assert not (tmp_path / "a.safetensors").exists()
    save_file({"w": torch.zeros(1)}, str(tmp_path / "foreign.safetensors"))
    with pytest.raises(CheckpointError, match=r"foreign\.safetensors.*mutask\.format"):
        load_exported(tmp_path / "foreign.safetensors")

    good = tmp_path / "good.safetensors"
    save_exported(model, good, {})
    tensors, meta = load_file(str(good)), exported_metadata(good)
    save_file({**tensors, "extra": torch.zeros(1)}, str(tmp_path / "x.safetensors"), meta)
    with pytest.raises(CheckpointError, match=r"'extra'.*unexpected"):
        load_exported(tmp_path / "x.safetensors")
    del tensors["blocks.0.mlp.fc1.weight"]
    save_file(tensors, str(tmp_path / "y.safetensors"), meta)
    with pytest.raises(CheckpointError, match=r"'blocks\.0\.mlp\.fc1\.weight'.*missing"):
        load_exported(tmp_path / "y.safetensors")
