"""The no-forgetting check: every retained path's weights and outputs are unchanged.

Publishing measures a path's outputs (:func:`measure`: test accuracy and the SHA-256 of its
logits on a fixed probe batch) at the precision it trained at, and records that precision,
the device kind and the device model in the manifest. Verifying a task re-hashes every
component's parameters as they are live in this process (the very tensors training ran
next to) and compares them bit for bit with the recorded hashes: that is the guarantee, on
any device. It then re-measures the outputs at the recorded precision and compares them
where the result is bit-reproducible:

* float32 (and manifests from before precision was recorded): the test accuracy on any
  device (as always), the probe logits on the same device kind;
* bfloat16: both only on the same device kind and model. Autocast runs the matmuls on
  bf16 inputs with float32 accumulation in kernels that differ per device (CPU: oneDNN's
  native bf16 dot products on AVX512-BF16/AMX vs converted float32 FMAs on AVX2; GPUs and
  TPUs: their own). On one device model the kernels are deterministic for fixed shapes:
  measured on CPU (AVX512), the same logits for 1 and 2 threads and any chunking. Across
  models the outputs may differ in the last bits, so there only the weights are compared.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from mutask.trainer.config import DatasetConfig
from mutask.trainer.data import DatasetError
from mutask.trainer.data.sets import EvalSet
from mutask.trainer.evolution import Path
from mutask.trainer.iteration.pool import ComponentPool
from mutask.trainer.iteration.taskdata import TaskDataCache
from mutask.trainer.runtime.device import DeviceChoice, device_model, precision_dtype
from mutask.trainer.store.objects import StoreDamaged
from mutask.trainer.training import logits_of
from mutask.trainer.training.backend import backend_for, device_of
from mutask.trainer.training.candidate import accuracy, count_correct, mixed_precision

PROBE_SIZE = 256


def probe_sha256(
    model: torch.nn.Module, images: torch.Tensor, autocast: torch.dtype | None = None
) -> str:
    """SHA-256 of the logits (as float32) on the first PROBE_SIZE images, at ``autocast``."""
    logits = logits_of(model, images[:PROBE_SIZE], autocast=autocast).float().cpu().contiguous()
    return hashlib.sha256(logits.numpy().tobytes()).hexdigest()


@dataclass(frozen=True)
class Measurement:
    """A path's outputs at one precision: test accuracy and the probe logits' hash."""

    test_accuracy: float
    probe_sha256: str


def split_accuracy(
    model: torch.nn.Module, test: EvalSet, autocast: torch.dtype | None, batch_size: int = 256
) -> float:
    """Top-1 accuracy over every example of ``test``, streamed in order in batches of
    ``batch_size`` (the same batches, so the same numbers, whether it is cached or not), on
    the model's device, each batch moved and cut the device's way (see
    :mod:`mutask.trainer.training.backend`: on XLA, data is made on the host)."""
    backend = backend_for(device_of(model))
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=backend.device)
    backend.boundary()  # the count starts as device data: every batch runs one graph
    with backend.inference(), mixed_precision(backend.device, autocast):
        for images, labels in test.batches(batch_size):
            for x, y in backend.chunks(images, labels, batch_size):
                correct += count_correct(model(x), y)
                backend.boundary()
    model.train(was_training)
    return accuracy(correct, len(test))


def measure(
    model: torch.nn.Module,
    test: EvalSet,
    autocast: torch.dtype | None,
    batch_size: int = 256,
) -> Measurement:
    """What publish records and verify re-measures, at the same precision."""
    return Measurement(
        split_accuracy(model, test, autocast, batch_size),
        probe_sha256(model, test.tensors(PROBE_SIZE)[0], autocast),
    )


@dataclass(frozen=True)
class Verification:
    """The result of re-checking one task (``None``: not compared, see the module doc)."""

    task: str
    hashes_ok: bool
    bad_components: list[str]
    test_accuracy_recorded: float | None
    test_accuracy_now: float | None
    probe_ok: bool | None
    precision: str = "float32"
    accuracy_compared: bool = True
    damage: str | None = None  # the store cannot give back what was published (see scan)
    note: str | None = None  # why something was not compared

    @property
    def ok(self) -> bool:
        same_acc = self.test_accuracy_recorded == self.test_accuracy_now
        return (
            self.damage is None
            and self.hashes_ok
            and (same_acc or not self.accuracy_compared)
            and self.probe_ok is not False
        )

    @property
    def forgotten(self) -> bool:
        """Weights or outputs changed (as opposed to a task the store holds damaged)."""
        return self.damage is None and not self.ok


def damaged(task: str, why: str, manifest: Mapping[str, Any] | None = None) -> Verification:
    """The verification of a task the store holds damaged: not ok, says why."""
    m = manifest or {}
    return Verification(
        task=task,
        hashes_ok=False,
        bad_components=[],
        test_accuracy_recorded=m.get("test_accuracy") if isinstance(m, Mapping) else None,
        test_accuracy_now=None,
        probe_ok=None,
        precision=str(m.get("precision") or "float32") if isinstance(m, Mapping) else "float32",
        damage=why,
    )


def verify_task(
    manifest: Mapping[str, Any],
    pool: ComponentPool,
    data: TaskDataCache,
    device: DeviceChoice,
    batch_size: int = 256,
) -> Verification:
    """Re-check one published task on ``device`` (see the module doc for what is compared);
    a blob the store cannot give back intact makes it a damaged verification."""
    try:
        return _verify(manifest, pool, data, device, batch_size)
    except StoreDamaged as err:
        return damaged(str(manifest["task"]), str(err), manifest)


def _verify(
    manifest: Mapping[str, Any],
    pool: ComponentPool,
    data: TaskDataCache,
    device: DeviceChoice,
    batch_size: int,
) -> Verification:
    path = Path.from_dict(manifest["path"])
    bad = [
        cid
        for cid in path.component_ids
        if pool.param_hash(cid) != manifest["components"][cid]["param_hash"]
    ]
    precision = str(manifest.get("precision") or "float32")
    same_kind = manifest.get("device_kind") == device.kind
    if precision == "float32":
        reproducible, accuracy_compared = same_kind, True
    else:
        reproducible = same_kind and manifest.get("device_model") == device_model(device)
        accuracy_compared = reproducible
    acc_now: float | None = None
    probe_ok: bool | None = None
    note: str | None = None
    if manifest.get("dataset") and manifest.get("test_accuracy") is not None:
        shape = manifest["shape"]
        try:  # the test split is streamed: a read can fail midway as well as up front
            task = data.get(
                manifest["task"], DatasetConfig(**manifest["dataset"]), int(shape["image_size"])
            )
            now = measure(pool.model(path), task.test, precision_dtype(precision), batch_size)
        except DatasetError as err:  # e.g. its files moved: the weights are still checked
            accuracy_compared, note = False, f"test data unavailable: {err}"
        else:
            acc_now = now.test_accuracy
            if manifest.get("probe_sha256") and reproducible:
                probe_ok = now.probe_sha256 == manifest["probe_sha256"]
    else:
        accuracy_compared = True  # nothing measured: recorded and re-measured are both None
    return Verification(
        task=str(manifest["task"]),
        hashes_ok=not bad,
        bad_components=bad,
        test_accuracy_recorded=manifest.get("test_accuracy"),
        test_accuracy_now=acc_now,
        probe_ok=probe_ok,
        precision=precision,
        accuracy_compared=accuracy_compared,
        note=note,
    )
