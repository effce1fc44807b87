"""Helpers of the XLA tests (imported as a plain module): the skip, tiny candidates, the CLI.

The XLA tests run in CI's XLA venv (`.ci/xla-venv.sh`) with ``PJRT_DEVICE=CPU`` and emulated
devices (``CPU_NUM_DEVICES``); in any venv without torch_xla they skip, saying so.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from mutask.trainer.evolution import ViTShape, architecture
from mutask.trainer.models import PathModel, build_component
from mutask.trainer.training import Candidate

NO_XLA = "torch_xla is not importable here: the XLA tests run in CI's XLA venv (.ci/xla-venv.sh)"


def require_xla() -> Any:
    """torch_xla, or skip the calling module with the reason."""
    return pytest.importorskip("torch_xla", reason=NO_XLA)


SHAPE = ViTShape(hidden=16, depth=2, heads=2, mlp=32, patch=4, image_size=8)
HP: dict[str, float | bool] = {
    "opt_lr": 0.05,
    "opt_momentum": 0.9,
    "opt_nesterov": False,
    "opt_lr_warmup_ratio": 0.2,
}
NAMES = architecture(SHAPE.depth, set())
HEAD = frozenset({"head"})
TOP = frozenset({f"encoderblock_{SHAPE.depth - 1}", "encoder_norm", "head"})


def root_modules(device: torch.device, seed: int = 0) -> dict[str, torch.nn.Module]:
    """A frozen root path's components on ``device`` (seeded, so equal every call)."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name in NAMES:
        module = build_component(name, SHAPE, num_classes=10, generator=gen).to(device)
        out[name] = module.requires_grad_(False)
    return out


def candidate(
    root: dict[str, torch.nn.Module], own: frozenset[str], hparams: dict[str, Any]
) -> Candidate:
    """A child owning copies of the root's components ``own``; the rest shared and frozen."""
    comps, trainable = [], []
    for name in NAMES:
        module = root[name]
        if name in own:
            module = copy.deepcopy(module).requires_grad_(True)
            trainable.append(module)
        comps.append((name, module))
    prefix = tuple(f"root/{n}" for n in NAMES[: min(NAMES.index(n) for n in own)])
    return Candidate(PathModel(comps), trainable, [{} for _ in trainable], hparams, prefix=prefix)


def data(n: int = 256, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, SHAPE.image_size, SHAPE.image_size, generator=gen) * 2 - 1
    return x, torch.randint(0, 10, (n,), generator=gen)


def params(modules: Sequence[torch.nn.Module]) -> list[torch.Tensor]:
    return [p.detach().to("cpu").clone() for m in modules for p in m.parameters()]


def mutask(args: list[str], cwd: Path, devices: int, **popen: Any) -> subprocess.Popen[str]:
    """`mutask ARGS` of this venv, on XLA's CPU backend with ``devices`` emulated chips."""
    env = {**os.environ, "PJRT_DEVICE": "CPU", "CPU_NUM_DEVICES": str(devices)}
    exe = str(Path(sys.executable).parent / "mutask")
    return subprocess.Popen([exe, *args], cwd=cwd, env=env, text=True, **popen)
