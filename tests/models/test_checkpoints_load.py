"""load_root_weights: timm and Google/big_vision layouts, both file formats, resize, errors.

The timm path is checked against an independent plain-torch forward written from timm's
``VisionTransformer`` definition; the Google path by converting the same weights to the Flax
layout here and requiring bit-identical component weights and outputs.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor

from mutask.trainer.evolution.architecture import ViTShape, architecture
from mutask.trainer.models import CheckpointError, PathModel, build_component, load_root_weights

State = dict[str, Tensor]


# --------------------------------------------------------------------------- test fixtures


def timm_state(s: ViTShape, depth: int | None = None, classes: int = 5, seed: int = 0) -> State:
    """Random weights (LayerNorms included) under timm names for a ViT of shape ``s``."""
    g = torch.Generator().manual_seed(seed)
    d, m, p, c = s.hidden, s.mlp, s.patch, s.channels

    def r(*size: int) -> Tensor:
        return torch.randn(size, generator=g) * 0.2

    sd = {
        "patch_embed.proj.weight": r(d, c, p, p),
        "patch_embed.proj.bias": r(d),
        "cls_token": r(1, 1, d),
        "pos_embed": r(1, s.tokens, d),
        "norm.weight": 1 + r(d),
        "norm.bias": r(d),
        "head.weight": r(classes, d),
        "head.bias": r(classes),
    }
    for i in range(s.depth if depth is None else depth):
        for name, size in [
            ("norm1", (d,)), ("attn.qkv", (3 * d, d)), ("attn.proj", (d, d)),
            ("norm2", (d,)), ("mlp.fc1", (m, d)), ("mlp.fc2", (d, m)),
        ]:  # fmt: skip
            sd[f"blocks.{i}.{name}.weight"] = (1 + r(*size)) if "norm" in name else r(*size)
            sd[f"blocks.{i}.{name}.bias"] = r(size[0])
    return sd


def block_weights(sd: State, i: int) -> State:
    prefix = f"blocks.{i}."
    return {k.removeprefix(prefix): v for k, v in sd.items() if k.startswith(prefix)}


def reference_forward(sd: State, images: Tensor, s: ViTShape) -> Tensor:
    """timm VisionTransformer.forward in plain float64 torch ops (class-token pooling)."""
    sd = {k: v.double() for k, v in sd.items()}
    b, d, h = images.shape[0], s.hidden, s.heads
    x = F.conv2d(images.double(), sd["patch_embed.proj.weight"], sd["patch_embed.proj.bias"],
                 stride=s.patch).flatten(2).transpose(1, 2)  # fmt: skip
    x = torch.cat([sd["cls_token"].expand(b, -1, -1), x], dim=1) + sd["pos_embed"]
    n, i = x.shape[1], 0
    while f"blocks.{i}.norm1.weight" in sd:
        w = block_weights(sd, i)
        y = F.layer_norm(x, (d,), w["norm1.weight"], w["norm1.bias"], eps=1e-6)
        qkv = torch.einsum("bnd,ed->bne", y, w["attn.qkv.weight"]) + w["attn.qkv.bias"]
        q, k, v = qkv.reshape(b, n, 3, h, d // h).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // h), dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, n, d)
        x = x + y @ w["attn.proj.weight"].T + w["attn.proj.bias"]
        y = F.layer_norm(x, (d,), w["norm2.weight"], w["norm2.bias"], eps=1e-6)
        y = F.gelu(y @ w["mlp.fc1.weight"].T + w["mlp.fc1.bias"])
        x = x + y @ w["mlp.fc2.weight"].T + w["mlp.fc2.bias"]
        i += 1
    x = F.layer_norm(x, (d,), sd["norm.weight"], sd["norm.bias"], eps=1e-6)
    return x[:, 0] @ sd["head.weight"].T + sd["head.bias"]


def to_google(sd: State, s: ViTShape, style: str = "vit", scan: bool = False) -> State:
    """The same weights under Google ViT (``vit``) or big_vision (``bv``) names and layout."""
    d, h = s.hidden, s.heads
    attn, ln2, mlp = (
        ("MultiHeadDotProductAttention_1", "LayerNorm_2", "MlpBlock_3")
        if style == "vit"
        else ("MultiHeadDotProductAttention_0", "LayerNorm_1", "MlpBlock_0")
    )
    out = {
        "embedding/kernel": sd["patch_embed.proj.weight"].permute(2, 3, 1, 0),
        "embedding/bias": sd["patch_embed.proj.bias"],
        "cls": sd["cls_token"],
        "Transformer/encoder_norm/scale": sd["norm.weight"],
        "Transformer/encoder_norm/bias": sd["norm.bias"],
        "head/kernel": sd["head.weight"].T,
        "head/bias": sd["head.bias"],
    }
    if style == "vit":
        out["Transformer/posembed_input/pos_embedding"] = sd["pos_embed"]
    else:  # big_vision adds no position to the class token
        assert torch.all(sd["pos_embed"][:, 0] == 0)
        out["pos_embedding"] = sd["pos_embed"][:, 1:]
    blocks = []
    i = 0
    while f"blocks.{i}.norm1.weight" in sd:
        w = block_weights(sd, i)
        blk = {
            "LayerNorm_0/scale": w["norm1.weight"], "LayerNorm_0/bias": w["norm1.bias"],
            f"{ln2}/scale": w["norm2.weight"], f"{ln2}/bias": w["norm2.bias"],
            f"{attn}/out/kernel": w["attn.proj.weight"].T.reshape(h, d // h, d),
            f"{attn}/out/bias": w["attn.proj.bias"],
            f"{mlp}/Dense_0/kernel": w["mlp.fc1.weight"].T,
            f"{mlp}/Dense_0/bias": w["mlp.fc1.bias"],
            f"{mlp}/Dense_1/kernel": w["mlp.fc2.weight"].T,
            f"{mlp}/Dense_1/bias": w["mlp.fc2.bias"],
        }  # fmt: skip
        for j, part in enumerate(("query", "key", "value")):
            rows = slice(j * d, (j + 1) * d)
            blk[f"{attn}/{part}/kernel"] = w["attn.qkv.weight"][rows].T.reshape(d, h, d // h)
            blk[f"{attn}/{part}/bias"] = w["attn.qkv.bias"][rows].reshape(h, d // h)
        blocks.append(blk)
        i += 1
    for i, blk in enumerate(blocks):
        if not scan:
            out.update({f"Transformer/encoderblock_{i}/{k}": v for k, v in blk.items()})
    if scan:
        out.update({f"Transformer/encoderblock/{k}": torch.stack([b[k] for b in blocks])
                    for k in blocks[0]})  # fmt: skip
    return {k: v.contiguous() for k, v in out.items()}


def write(sd: State, path: Path, prefix: str = "") -> Path:
    sd = {prefix + k: v.contiguous() for k, v in sd.items()}
    if path.suffix == ".npz":
        np.savez(path, **{k: v.numpy() for k, v in sd.items()})  # type: ignore[arg-type]
    else:
        save_file(sd, str(path))
    return path


def model_from(weights: dict[str, State], s: ViTShape) -> PathModel:
    comps = []
    for name in architecture(s.depth, set()):
        classes = weights["head"]["weight"].shape[0] if name == "head" else 0
        module = build_component(name, s, num_classes=classes)
        module.load_state_dict(weights[name], strict=True)
        comps.append((name, module))
    return PathModel(comps)


def assert_same(a: dict[str, State], b: dict[str, State]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert a[name].keys() == b[name].keys(), name
        for key in a[name]:
            assert torch.equal(a[name][key], b[name][key]), (name, key)


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_timm_matches_reference_forward(
    tmp_path: Path, shape: ViTShape, images: Tensor, suffix: str
) -> None:
    sd = timm_state(shape)
    weights = load_root_weights(write(sd, tmp_path / f"vit{suffix}"), shape)
    assert list(weights) == [*architecture(shape.depth, set())]
    assert all(t.dtype == torch.float32 for w in weights.values() for t in w.values())
    got = model_from(weights, shape)(images)
    torch.testing.assert_close(got.double(), reference_forward(sd, images, shape),
                               rtol=1e-5, atol=1e-5)  # fmt: skip


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
@pytest.mark.parametrize("prefix", ["", "params/"])
@pytest.mark.parametrize(("style", "scan"), [("vit", False), ("bv", False), ("bv", True)])
def test_google_layouts_match_timm(
    tmp_path: Path, shape: ViTShape, images: Tensor, suffix: str, prefix: str, style: str,
    scan: bool,
) -> None:  # fmt: skip
    sd = timm_state(shape)
    sd["pos_embed"][:, 0] = 0  # so the big_vision layout (no class position) is exact
    ref = load_root_weights(write(sd, tmp_path / "timm.safetensors"), shape)
    google = to_google(sd, shape, style, scan)
    got = load_root_weights(write(google, tmp_path / f"g{suffix}", prefix), shape)
    assert_same(got, ref)
    assert torch.equal(model_from(got, shape)(images), model_from(ref, shape)(images))


def test_params_prefix_drops_other_trees(tmp_path: Path, shape: ViTShape) -> None:
    google = to_google(timm_state(shape), shape)
    raw = {f"params/{k}": v for k, v in google.items()}
    raw["opt/state/embedding/kernel"] = torch.zeros(1)
    weights = load_root_weights(write(raw, tmp_path / "ckpt.npz"), shape)
    assert "head" in weights


def test_extra_blocks_ignored_fewer_blocks_rejected(tmp_path: Path, shape: ViTShape) -> None:
    deep = timm_state(shape, depth=5)
    weights = load_root_weights(write(deep, tmp_path / "deep.safetensors"), shape)
    assert "encoderblock_2" in weights and "encoderblock_3" not in weights
    qkv = weights["encoderblock_2"]["attn.qkv.weight"]
    assert torch.equal(qkv, deep["blocks.2.attn.qkv.weight"])
    shallow = timm_state(shape, depth=2)
    with pytest.raises(CheckpointError, match=r"shallow\.safetensors.*blocks\.2.*2 blocks"):
        load_root_weights(write(shallow, tmp_path / "shallow.safetensors"), shape)
    google = to_google(shallow, shape)
    with pytest.raises(CheckpointError, match=r"encoderblock_2.*2 blocks.*needs 3"):
        load_root_weights(write(google, tmp_path / "shallow.npz"), shape)


def _bilinear_half_pixel(grid: np.ndarray, size: int) -> np.ndarray:
    """Independent bilinear resize of [g, g, D] with half-pixel centres and edge clamping."""
    g = grid.shape[0]
    coords = np.clip((np.arange(size) + 0.5) * g / size - 0.5, 0, g - 1)
    lo = np.floor(coords).astype(int)
    hi = np.minimum(lo + 1, g - 1)
    t = coords - lo
    rows = grid[lo] * (1 - t)[:, None, None] + grid[hi] * t[:, None, None]
    out: np.ndarray = rows[:, lo] * (1 - t)[None, :, None] + rows[:, hi] * t[None, :, None]
    return out


def test_pos_embed_is_resized_bilinearly(tmp_path: Path, shape: ViTShape) -> None:
    sd = timm_state(shape)  # 16 px / 4 px patches: 4x4 grid
    big = ViTShape(shape.hidden, shape.depth, shape.heads, shape.mlp, shape.patch, image_size=40)
    weights = load_root_weights(write(sd, tmp_path / "vit.safetensors"), big)
    pos = weights["posembed_input"]["pos"]
    assert pos.shape == (1, 101, shape.hidden)
    assert torch.equal(pos[0, 0], sd["pos_embed"][0, 0])
    expect = _bilinear_half_pixel(sd["pos_embed"][0, 1:].reshape(4, 4, -1).numpy(), 10)
    np.testing.assert_allclose(pos[0, 1:].reshape(10, 10, -1).numpy(), expect, atol=1e-6)
    build_component("posembed_input", big).load_state_dict(weights["posembed_input"])


def test_pos_embed_without_class_slot_gets_zero_slot(tmp_path: Path, shape: ViTShape) -> None:
    sd = timm_state(shape)
    grid = sd["pos_embed"][:, 1:].clone()
    sd["pos_embed"] = grid  # timm no_embed_class layout
    pos = load_root_weights(write(sd, tmp_path / "v.safetensors"), shape)["posembed_input"]["pos"]
    assert torch.equal(pos[:, 0], torch.zeros(1, shape.hidden))
    assert torch.equal(pos[:, 1:], grid)


def test_missing_class_token_warns_and_uses_zeros(tmp_path: Path, shape: ViTShape) -> None:
    google = to_google(timm_state(shape), shape)
    del google["cls"]
    with pytest.warns(UserWarning, match="no class token"):
        weights = load_root_weights(write(google, tmp_path / "gap.npz"), shape)
    assert torch.equal(weights["cls"]["token"], torch.zeros(1, 1, shape.hidden))


def test_head_only_when_present_and_direct(tmp_path: Path, shape: ViTShape) -> None:
    sd = timm_state(shape, classes=9)
    weights = load_root_weights(write(sd, tmp_path / "a.safetensors"), shape)
    assert weights["head"]["weight"].shape == (9, shape.hidden)
    headless = {k: v for k, v in sd.items() if not k.startswith("head.")}
    assert "head" not in load_root_weights(write(headless, tmp_path / "b.safetensors"), shape)
    google = to_google(sd, shape)
    google["pre_logits/kernel"] = torch.zeros(shape.hidden, shape.hidden)
    assert "head" not in load_root_weights(write(google, tmp_path / "c.npz"), shape)


def test_half_precision_is_upcast(tmp_path: Path, shape: ViTShape) -> None:
    sd = {k: v.half() for k, v in timm_state(shape).items()}
    weights = load_root_weights(write(sd, tmp_path / "h.safetensors"), shape)
    assert weights["encoderblock_0"]["mlp.fc1.weight"].dtype == torch.float32
    fc1 = weights["encoderblock_0"]["mlp.fc1.weight"]
    assert torch.equal(fc1, sd["blocks.0.mlp.fc1.weight"].float())


def test_bad_shapes_name_file_key_and_shapes(tmp_path: Path, shape: ViTShape) -> None:
    sd = timm_state(shape)
    sd["blocks.1.attn.qkv.weight"] = torch.zeros(90, 32)
    with pytest.raises(CheckpointError) as err:
        load_root_weights(write(sd, tmp_path / "bad.safetensors"), shape)
    msg = str(err.value)
    assert "bad.safetensors" in msg and "'blocks.1.attn.qkv.weight'" in msg
    assert "[96, 32]" in msg and "[90, 32]" in msg
    assert err.value.key == "blocks.1.attn.qkv.weight" and isinstance(err.value, ValueError)

    google = to_google(timm_state(shape), shape)
    key = "Transformer/encoderblock_0/MultiHeadDotProductAttention_1/query/kernel"
    google[key] = torch.zeros(32, 8, 4)
    expected = r"bad\.npz.*query/kernel.*\[32, 4, 8\].*\[32, 8, 4\]"
    with pytest.raises(CheckpointError, match=expected):
        load_root_weights(write(google, tmp_path / "bad.npz"), shape)

    wide = timm_state(ViTShape(48, 3, 4, 64, 4, 16))
    with pytest.raises(CheckpointError, match=r"patch_embed\.proj\.weight.*\[32, 3, 4, 4\]"):
        load_root_weights(write(wide, tmp_path / "wide.safetensors"), shape)


def test_missing_key_and_unreadable_files(tmp_path: Path, shape: ViTShape) -> None:
    sd = timm_state(shape)
    del sd["blocks.0.mlp.fc2.bias"]
    expected = r"m\.safetensors.*'blocks\.0\.mlp\.fc2\.bias'.*missing"
    with pytest.raises(CheckpointError, match=expected):
        load_root_weights(write(sd, tmp_path / "m.safetensors"), shape)
    with pytest.raises(CheckpointError, match="unknown key convention"):
        load_root_weights(write({"w": torch.zeros(2)}, tmp_path / "x.safetensors"), shape)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match=r"junk\.npz.*cannot read"):
        load_root_weights(tmp_path / "junk.npz", shape)
    with pytest.raises(CheckpointError, match="unsupported file type"):
        load_root_weights(tmp_path / "model.pth", shape)
    with pytest.raises(CheckpointError, match="cannot read"):
        load_root_weights(tmp_path / "absent.safetensors", shape)


def test_loading_does_not_warn_for_standard_files(tmp_path: Path, shape: ViTShape) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_root_weights(write(timm_state(shape), tmp_path / "ok.safetensors"), shape)
