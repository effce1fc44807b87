"""The system's persistent layout on any object store: blobs, manifests, resume states.

Layout under the store root::

    blobs/<sha256>.safetensors     one component each (params + optimizer momentum), immutable
    tasks/<task>/manifest.json     the task's retained path, scores, lineage, accounting
    tasks/<task>/resume.json       the in-flight iteration's state after its last generation
    tasks/<task>/lease.json        who may write this task now (see :mod:`.lease`)
    tasks/<task>/exchange/...      candidate records of workers sharing a generation
                                   (see :mod:`mutask.trainer.iteration.exchange`)

Blobs are content-addressed and written before the manifest that references them, and the
manifest is replaced atomically (compare-and-swap on its generation), so a reader sees the
old state or the new one, never a mix. The system view is assembled from the healthy
manifests (:mod:`.damage` says which are damaged and why); keys: :mod:`.layout`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from mutask.trainer.evolution import Component, Path, System, ViTShape
from mutask.trainer.store.damage import StoreScan, parse_manifest, scan
from mutask.trainer.store.layout import (
    BLOBS,
    MANIFEST,
    RESUME,
    TASKS,
    blob_key,
    task_key,
    task_of,
    task_prefix,
)
from mutask.trainer.store.objects import (
    EmptyStore,
    NotFound,
    ObjectStore,
    PreconditionFailed,
    StoreDamaged,
    open_object_store,
)

__all__ = ["BLOBS", "TASKS", "SystemStore", "task_prefix"]

# A publish refreshes referenced blobs older than this, so they stay younger than the GC
# grace period (which must exceed it, plus the longest publish) while the manifest lands.
REFRESH_AFTER = 600.0
# Temp files of interrupted local writes older than this are removed by the next run and by
# GC (GC with a shorter grace: down to DEBRIS_FLOOR); no live write takes that long. Idle
# lock files go at any age (removing one takes its lock).
DEBRIS_AGE = 600.0
DEBRIS_FLOOR = 60.0


def param_hash(params: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 over parameter names, dtypes, shapes and bytes (the frozen-weights hash)."""
    h = hashlib.sha256()
    for name in sorted(params):
        t = params[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def encode_component(
    params: Mapping[str, torch.Tensor], momentum: Mapping[str, torch.Tensor]
) -> bytes:
    """Serialise a component (params + momentum) deterministically with safetensors."""
    tensors = {f"param/{k}": v.detach().to("cpu").contiguous() for k, v in params.items()}
    tensors.update(
        {f"momentum/{k}": v.detach().to("cpu").contiguous() for k, v in momentum.items()}
    )
    return st_save(dict(sorted(tensors.items())))


def decode_component(data: bytes) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    tensors = st_load(data)
    params = {k[len("param/") :]: v for k, v in tensors.items() if k.startswith("param/")}
    momentum = {k[len("momentum/") :]: v for k, v in tensors.items() if k.startswith("momentum/")}
    return params, momentum


class SystemStore:
    """Blobs, manifests and resume states of one system, over an :class:`ObjectStore`."""

    def __init__(self, objects: ObjectStore, *, refresh_after: float = REFRESH_AFTER) -> None:
        self.objects = objects
        self.refresh_after = refresh_after

    @classmethod
    def open(cls, uri: str) -> SystemStore:
        return cls(open_object_store(uri))

    @property
    def uri(self) -> str:
        return self.objects.uri

    # -- blobs ---------------------------------------------------------------------------
    def put_blob(self, data: bytes) -> str:
        """Store bytes under their SHA-256 (write once; skipped when already present).

        A reused blob gets its ``updated`` time refreshed, so a concurrent GC that saw it
        unreferenced and old cannot delete it now that a publish is about to reference it.
        """
        digest = hashlib.sha256(data).hexdigest()
        key = f"{BLOBS}{digest}.safetensors"
        if self.objects.stat(key) is None or not self._refresh(key):
            self.objects.write(key, data)
        return digest

    def _refresh(self, key: str) -> bool:
        """Touch an existing blob; False if it vanished (GC got there first: rewrite it)."""
        try:
            self.objects.touch(key)
        except NotFound:
            return False
        except PreconditionFailed:
            pass  # a concurrent writer refreshed it at the same moment
        return True

    def get_blob(self, digest: str) -> bytes:
        """The blob's bytes; StoreDamaged naming it if it is missing or its content changed."""
        key = blob_key(digest)
        try:
            data, _ = self.objects.read(key)
        except NotFound as err:
            raise StoreDamaged(f"{self.uri}/{key}: missing (a manifest references it)") from err
        if hashlib.sha256(data).hexdigest() != digest:
            raise StoreDamaged(f"{self.uri}/{key}: content hash mismatch (the blob was changed)")
        return data

    def put_component(
        self, params: Mapping[str, torch.Tensor], momentum: Mapping[str, torch.Tensor]
    ) -> str:
        return self.put_blob(encode_component(params, momentum))

    def get_component(self, digest: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        data = self.get_blob(digest)
        try:
            return decode_component(data)
        except (SafetensorError, ValueError) as err:
            raise StoreDamaged(f"{self.uri}/{blob_key(digest)}: not a component: {err}") from err

    # -- manifests -----------------------------------------------------------------------
    def read_manifest(self, task: str) -> tuple[dict[str, Any], int] | None:
        """The task's manifest and its generation, or None if never published; StoreDamaged
        (naming the object) if it is not a JSON object."""
        key = task_key(task, MANIFEST)
        try:
            data, gen = self.objects.read(key)
        except NotFound:
            return None
        return parse_manifest(self.uri, key, data), gen

    def publish(self, task: str, manifest: Mapping[str, Any], *, expected: int) -> int:
        """Replace the manifest iff it is still at generation ``expected`` (0 = new task)."""
        missing: list[str] = []
        now = time.time()
        for c in manifest["components"].values():
            key = blob_key(str(c["blob"]))
            info = self.objects.stat(key)
            if info is None or (now - info.updated > self.refresh_after and not self._refresh(key)):
                missing.append(key)
        if missing:
            raise StoreDamaged(
                f"{self.uri}: task {task}: publish refused, referenced blobs missing: {missing}"
            )
        body = json.dumps(manifest, indent=1, sort_keys=True).encode()
        return self.objects.write(task_key(task, MANIFEST), body, if_generation=expected)

    def tasks(self) -> list[str]:
        """Every task with a manifest object (healthy or not)."""
        found = (task_of(info.key, MANIFEST) for info in self.objects.list(TASKS))
        return sorted(t for t in found if t is not None)

    def scan(self, *, check_blobs: bool = True) -> StoreScan:
        """Every manifest, sorted into healthy and damaged (see :mod:`.damage`)."""
        return scan(self.objects, check_blobs=check_blobs)

    def manifests(self) -> dict[str, dict[str, Any]]:
        """The healthy manifests (damaged tasks are left out: :meth:`scan` says why)."""
        return self.scan().manifests

    # -- resume --------------------------------------------------------------------------
    def save_resume(self, task: str, state: Mapping[str, Any]) -> None:
        self.objects.write(task_key(task, RESUME), json.dumps(state).encode())

    def load_resume(self, task: str) -> dict[str, Any] | None:
        """The task's resume state, None if there is none; StoreDamaged naming the object if
        it is not a resume state (see :meth:`set_resume_aside`)."""
        key = task_key(task, RESUME)
        try:
            data, _ = self.objects.read(key)
        except NotFound:
            return None
        try:
            loaded = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise StoreDamaged(f"{self.uri}/{key}: unreadable resume state: {err}") from err
        if not isinstance(loaded, dict) or not {"fingerprint", "state", "blobs"} <= set(loaded):
            raise StoreDamaged(
                f"{self.uri}/{key}: not a resume state (needs fingerprint, state and blobs)"
            )
        return loaded

    def set_resume_aside(self, task: str) -> str:
        """Move a damaged resume state to ``resume.damaged.json`` (kept for inspection, never
        read again); the key it now has."""
        key, aside = task_key(task, RESUME), task_key(task, "resume.damaged.json")
        with contextlib.suppress(NotFound):
            data, _ = self.objects.read(key)
            self.objects.write(aside, data)
            self.objects.delete(key)
        return aside

    def clear_resume(self, task: str) -> None:
        with contextlib.suppress(NotFound):
            self.objects.delete(task_key(task, RESUME))

    # -- leftovers -------------------------------------------------------------------------
    def sweep(
        self, prefixes: tuple[str, ...], *, older_than: float = DEBRIS_AGE, now: float | None = None
    ) -> list[str]:
        """Remove leftovers of interrupted writes of the local backend under ``prefixes``:
        temp files not touched for ``older_than`` seconds, lock files nobody holds; their
        keys."""
        t = time.time() if now is None else now
        removed = []
        for prefix in prefixes:
            for info in self.objects.debris(prefix):
                old = t - info.updated >= older_than or info.key.endswith(".lock")
                if old and self.objects.remove_debris(info.key):
                    removed.append(info.key)
        return removed


def system_from_manifests(manifests: Mapping[str, Mapping[str, Any]]) -> System:
    """Assemble the pure system view (retained paths + their components) from manifests."""
    if not manifests:
        raise EmptyStore("the store holds no published task (bootstrap a root first)")
    shapes = {json.dumps(m["shape"], sort_keys=True) for m in manifests.values()}
    if len(shapes) != 1:
        raise StoreDamaged(f"manifests disagree on the model shape: {sorted(shapes)}")
    first = next(iter(manifests.values()))
    system = System(ViTShape(**first["shape"]))
    for task, manifest in manifests.items():
        system.add_components(Component.from_dict(c) for c in manifest["components"].values())
        system.best[task] = Path.from_dict(manifest["path"])
    return system


def blob_index(manifests: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """component id → its manifest entry (blob digest, param hash, creator)."""
    out: dict[str, dict[str, Any]] = {}
    for manifest in manifests.values():
        for cid, entry in manifest["components"].items():
            out[cid] = dict(entry)
    return out
