"""The no-forgetting check: every retained path's weights and outputs are unchanged.

For each published task it re-hashes every component's parameters as they are live in this
process (the very tensors training ran next to) and compares with the hash recorded at
publish time, re-evaluates test accuracy, and compares the SHA-256 of the logits on a fixed
probe batch (bit-identical outputs; compared only on the device kind that recorded it).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from mutask.trainer.config import DatasetConfig
from mutask.trainer.evolution import Path
from mutask.trainer.pool import ComponentPool
from mutask.trainer.taskdata import TaskDataCache
from mutask.trainer.training import evaluate, logits_of

PROBE_SIZE = 256


def probe_sha256(model: torch.nn.Module, images: torch.Tensor) -> str:
    """SHA-256 of the float32 logits on the first PROBE_SIZE images."""
    logits = logits_of(model, images[:PROBE_SIZE]).float().cpu().contiguous()
    return hashlib.sha256(logits.numpy().tobytes()).hexdigest()


@dataclass(frozen=True)
class Verification:
    """The result of re-checking one task."""

    task: str
    hashes_ok: bool
    bad_components: list[str]
    test_accuracy_recorded: float | None
    test_accuracy_now: float | None
    probe_ok: bool | None

    @property
    def ok(self) -> bool:
        same_acc = self.test_accuracy_recorded == self.test_accuracy_now
        return self.hashes_ok and same_acc and self.probe_ok is not False


def verify_task(
    manifest: Mapping[str, Any],
    pool: ComponentPool,
    data: TaskDataCache,
    device_kind: str,
    batch_size: int = 256,
) -> Verification:
    path = Path.from_dict(manifest["path"])
    bad = [
        cid
        for cid in path.component_ids
        if pool.param_hash(cid) != manifest["components"][cid]["param_hash"]
    ]
    acc_now: float | None = None
    probe_ok: bool | None = None
    if manifest.get("dataset") and manifest.get("test_accuracy") is not None:
        shape = manifest["shape"]
        task = data.get(
            manifest["task"], DatasetConfig(**manifest["dataset"]), int(shape["image_size"])
        )
        model = pool.model(path)
        acc_now = evaluate(model, task.test[0], task.test[1], batch_size)
        if manifest.get("probe_sha256") and manifest.get("device_kind") == device_kind:
            probe_ok = probe_sha256(model, task.test[0]) == manifest["probe_sha256"]
    return Verification(
        task=str(manifest["task"]),
        hashes_ok=not bad,
        bad_components=bad,
        test_accuracy_recorded=manifest.get("test_accuracy"),
        test_accuracy_now=acc_now,
        probe_ok=probe_ok,
    )
