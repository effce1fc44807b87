"""Checkpoint I/O: load root ViT weights (timm or Google layout) and export paths as safetensors.

Every layout is first turned into a flat dict in *timm naming and torch layout*; component
state dicts are then cut out of it with :func:`timm_key`, the one name map that export uses
too. An exported path is therefore a timm-style ViT file (plus ``adapters.{i}.*``) that
``load_root_weights`` can read back as a root model.

Loading rules (see :func:`load_root_weights`): the patch grid of the position embedding is
resized bilinearly to the target image size; a position embedding without a class-token slot
(big_vision, timm ``no_embed_class``) gets a zero slot, which is exactly equivalent because
those models add no position to the class token; a checkpoint without a class token (a
``gap``/``map``-pooled model) gets a zero class token, with a warning, since the loaded model
classifies on it; extra blocks beyond ``shape.depth`` are ignored; all tensors become float32.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor

from mutask.trainer.evolution.architecture import (
    CLS,
    EMBEDDING,
    ENCODER_NORM,
    HEAD,
    POSEMBED,
    ViTShape,
    adapter_index,
    block_index,
    block_name,
)
from mutask.trainer.models import _google
from mutask.trainer.models.errors import CheckpointError
from mutask.trainer.models.vit import (
    ClassToken,
    EncoderBlock,
    Head,
    PatchEmbedding,
    PathModel,
    PositionEmbedding,
    ResidualAdapter,
    build_component,
)

StrPath = str | os.PathLike[str]
Flat = dict[str, tuple[Tensor, str]]
"""timm key -> (tensor in torch layout, the key it came from in the file)."""

EXPORT_FORMAT = "mutask-vit/1"
_META = "mutask."
_TIMM_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def timm_key(name: str, key: str) -> str:
    """The timm-style file key of parameter ``key`` of component ``name``."""
    if name == EMBEDDING:
        return f"patch_embed.{key}"
    if name == CLS:
        return "cls_token"
    if name == POSEMBED:
        return "pos_embed"
    if name == ENCODER_NORM:
        return f"norm.{key}"
    if name == HEAD:
        return f"head.{key}"
    i = block_index(name)
    if i is not None:
        return f"blocks.{i}.{key}"
    i = adapter_index(name)
    if i is not None:
        return f"adapters.{i}.{key}"
    raise ValueError(f"unknown component name {name!r}")


# --------------------------------------------------------------------------- reading


def _read(path: StrPath) -> dict[str, Tensor]:
    """All tensors of a ``.safetensors`` or ``.npz`` file, ``params/`` prefix stripped."""
    suffix = os.fspath(path).lower().rsplit(".", 1)[-1]
    try:
        if suffix == "safetensors":
            raw = dict(load_file(os.fspath(path)))
        elif suffix == "npz":
            with np.load(path, allow_pickle=False) as z:
                raw = {k: torch.from_numpy(np.array(z[k])) for k in z.files}
        else:
            raise CheckpointError(path, None, "unsupported file type (want .safetensors or .npz)")
    except CheckpointError:
        raise
    except Exception as err:
        raise CheckpointError(path, None, f"cannot read: {err}") from err
    if any(k.startswith("params/") for k in raw):
        raw = {k.removeprefix("params/"): v for k, v in raw.items() if k.startswith("params/")}
    return raw


def _to_flat(raw: dict[str, Tensor], shape: ViTShape, path: StrPath) -> Flat:
    if "patch_embed.proj.weight" in raw:
        return {k: (v, k) for k, v in raw.items()}
    if "embedding/kernel" in raw:
        return _google.to_timm(raw, shape, path)
    sample = ", ".join(sorted(raw)[:8])
    raise CheckpointError(
        path,
        None,
        "unknown key convention: expected timm 'patch_embed.proj.weight' or Google "
        f"'embedding/kernel'; first keys: {sample}",
    )


def _timm_depth(flat: Flat) -> int:
    found = {int(m.group(1)) for k in flat if (m := _TIMM_BLOCK.match(k))}
    depth = 0
    while depth in found:
        depth += 1
    return depth


def _fit_pos(value: Tensor, src: str, shape: ViTShape, path: StrPath) -> Tensor:
    """[1, M, D] with or without a class slot -> [1, shape.tokens, D], grid resized."""
    d = shape.hidden
    if value.ndim == 2:
        value = value[None]
    if value.ndim != 3 or value.shape[0] != 1 or value.shape[2] != d:
        raise CheckpointError(
            path, src, f"expected shape [1, tokens, {d}], found {list(value.shape)}"
        )
    m = value.shape[1]
    if m > 1 and math.isqrt(m - 1) ** 2 == m - 1:
        cls_slot, grid = value[:, :1], value[:, 1:]
    elif math.isqrt(m) ** 2 == m:
        cls_slot, grid = torch.zeros_like(value[:, :1]), value
    else:
        raise CheckpointError(
            path, src, f"{m} positions is neither a square grid nor a square grid + 1"
        )
    g0, g = math.isqrt(grid.shape[1]), shape.image_size // shape.patch
    if g0 != g:
        img = grid.float().reshape(1, g0, g0, d).permute(0, 3, 1, 2)
        img = F.interpolate(img, size=(g, g), mode="bilinear", align_corners=False)
        grid = img.permute(0, 2, 3, 1).reshape(1, g * g, d)
    return torch.cat([cls_slot.to(grid.dtype), grid], dim=1)


# --------------------------------------------------------------------------- loading


def load_root_weights(path: StrPath, shape: ViTShape) -> dict[str, dict[str, Tensor]]:
    """Component name -> float32 state dict, loadable (strict) into ``build_component``.

    Reads ``.safetensors`` or ``.npz`` files with timm keys (``patch_embed.proj.weight``, ...)
    or Google ViT / big_vision keys (``embedding/kernel``, ..., optionally under ``params/``).
    Returns ``embedding``, ``cls``, ``posembed_input``, ``encoderblock_0..shape.depth-1``,
    ``encoder_norm`` and, if the file has a class-token head, ``head`` (its class count is
    ``state["weight"].shape[0]``). Raises :class:`CheckpointError` naming the file and key.
    """
    flat = _to_flat(_read(path), shape, path)
    depth = _timm_depth(flat)
    if depth < shape.depth:
        raise CheckpointError(
            path, f"blocks.{depth}", f"checkpoint has {depth} blocks, shape needs {shape.depth}"
        )
    if "cls_token" not in flat:
        warnings.warn(
            f"{os.fspath(path)}: no class token (gap/map-pooled model?); using a zero one",
            stacklevel=2,
        )
        flat["cls_token"] = (torch.zeros(1, 1, shape.hidden), "cls_token")
    names = [EMBEDDING, CLS, POSEMBED, *map(block_name, range(shape.depth)), ENCODER_NORM]
    # A head is ours only if it reads the class token directly (no pre-logits / fc_norm).
    head_ok = not any(k.startswith(("pre_logits", "fc_norm")) for k in flat)
    num_classes = 0
    if head_ok and "head.weight" in flat:
        head = flat["head.weight"][0]
        num_classes = head.shape[0] if head.ndim == 2 else 0
    if num_classes > 0:
        names.append(HEAD)
    out: dict[str, dict[str, Tensor]] = {}
    for name in names:
        ref = build_component(name, shape, num_classes=num_classes, device="meta").state_dict()
        state: dict[str, Tensor] = {}
        for key, like in ref.items():
            tk = timm_key(name, key)
            if tk not in flat:
                raise CheckpointError(path, tk, f"missing (needed for component {name!r})")
            value, src = flat[tk]
            if name == POSEMBED:
                value = _fit_pos(value, src, shape, path)
            if value.shape != like.shape:
                raise CheckpointError(
                    path, src, f"expected shape {list(like.shape)}, found {list(value.shape)}"
                )
            state[key] = value.to(torch.float32).contiguous()
        out[name] = state
    return out


# --------------------------------------------------------------------------- export


def export_state_dict(model: PathModel) -> dict[str, Tensor]:
    """The path's weights under timm names (``adapters.{i}.*`` for residual adapters)."""
    return {
        timm_key(name, key): t.detach().cpu().clone().contiguous()
        for name, module in model.items()
        for key, t in module.state_dict().items()
    }


def _describe(model: PathModel) -> dict[str, str]:
    """The ``mutask.*`` metadata that lets :func:`load_exported` rebuild the model."""
    mods = dict(model.items())
    emb, pos = mods[EMBEDDING], mods[POSEMBED]
    blocks = [m for n, m in model.items() if block_index(n) is not None]
    head = mods.get(HEAD)
    if not (
        isinstance(emb, PatchEmbedding)
        and isinstance(mods[CLS], ClassToken)
        and isinstance(pos, PositionEmbedding)
        and isinstance(head, Head)
        and all(isinstance(b, EncoderBlock) for b in blocks)
    ):
        raise TypeError("export needs a PathModel built from mutask.trainer.models components")
    first = blocks[0] if blocks and isinstance(blocks[0], EncoderBlock) else None
    shape = {
        "hidden": emb.hidden,
        "depth": len(blocks),
        # A block-less path has no heads/mlp; 1 and 0 keep ViTShape valid and are never used.
        "heads": first.heads if first else 1,
        "mlp": first.mlp_dim if first else 0,
        "patch": emb.patch,
        "image_size": math.isqrt(pos.tokens - 1) * emb.patch,
        "channels": emb.channels,
    }
    adapters = {n: m.adapter_dim for n, m in model.items() if isinstance(m, ResidualAdapter)}
    return {
        f"{_META}format": EXPORT_FORMAT,
        f"{_META}shape": json.dumps(shape),
        f"{_META}architecture": json.dumps(list(model.names)),
        f"{_META}num_classes": str(head.num_classes),
        f"{_META}adapter_dims": json.dumps(adapters),
    }


def save_exported(model: PathModel, path: StrPath, metadata: dict[str, str]) -> None:
    """Write the path as a standalone safetensors file (atomically).

    ``metadata`` is stored as-is next to the ``mutask.*`` keys (reserved) that describe the
    architecture; read it back with :func:`exported_metadata`.
    """
    reserved = sorted(k for k in metadata if k.startswith(_META))
    if reserved:
        raise ValueError(f"metadata keys {reserved} use the reserved prefix {_META!r}")
    meta = {**{str(k): str(v) for k, v in metadata.items()}, **_describe(model)}
    target = os.fspath(path)
    fd, tmp = tempfile.mkstemp(prefix=".export-", dir=os.path.dirname(target) or ".")
    os.close(fd)
    try:
        save_file(export_state_dict(model), tmp, metadata=meta)
        os.replace(tmp, target)
    except BaseException:
        os.unlink(tmp)
        raise


def exported_metadata(path: StrPath) -> dict[str, str]:
    """The metadata of an exported file (user keys and ``mutask.*`` keys)."""
    try:
        with safe_open(os.fspath(path), "pt") as f:
            return dict(f.metadata() or {})
    except Exception as err:
        raise CheckpointError(path, None, f"cannot read: {err}") from err


def load_exported(path: StrPath) -> PathModel:
    """Rebuild the standalone :class:`PathModel` written by :func:`save_exported`."""
    meta = exported_metadata(path)
    if meta.get(f"{_META}format") != EXPORT_FORMAT:
        raise CheckpointError(path, f"{_META}format", f"not a {EXPORT_FORMAT} export")
    shape = ViTShape(**json.loads(meta[f"{_META}shape"]))
    names: list[str] = json.loads(meta[f"{_META}architecture"])
    adapter_dims: dict[str, int] = json.loads(meta[f"{_META}adapter_dims"])
    num_classes = int(meta[f"{_META}num_classes"])
    tensors = dict(load_file(os.fspath(path)))
    components = []
    for name in names:
        module = build_component(
            name,
            shape,
            num_classes=num_classes,
            adapter_dim=adapter_dims.get(name, 0),
            device="meta",
        )
        state = {}
        for key, like in module.state_dict().items():
            tk = timm_key(name, key)
            value = tensors.pop(tk, None)
            if value is None or value.shape != like.shape:
                found = "missing" if value is None else list(value.shape)
                raise CheckpointError(path, tk, f"expected {list(like.shape)}, found {found}")
            state[key] = value
        module.load_state_dict(state, strict=True, assign=True)
        components.append((name, module))
    if tensors:
        raise CheckpointError(path, sorted(tensors)[0], "unexpected key in export")
    return PathModel(components)
