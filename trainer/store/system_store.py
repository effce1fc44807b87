"""The system's persistent layout on any object store: blobs, manifests, resume states.

Layout under the store root::

    blobs/<sha256>.safetensors     one component each (params + optimizer momentum), immutable
    tasks/<task>/manifest.json     the task's retained path, scores, lineage, accounting
    tasks/<task>/resume.json       the in-flight iteration's state after its last generation
    tasks/<task>/lease.json        who may write this task now (see :mod:`.lease`)

Blobs are content-addressed and written before the manifest that references them, and the
manifest is replaced atomically (compare-and-swap on its generation), so a reader sees the
old state or the new one, never a mix. The system view is assembled from all manifests.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote

import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from mutask.trainer.evolution import Component, Path, System, ViTShape
from mutask.trainer.store.faults import crash_point
from mutask.trainer.store.objects import (
    NotFound,
    ObjectStore,
    PreconditionFailed,
    StoreError,
    open_object_store,
)

# A publish refreshes referenced blobs older than this, so they stay younger than the GC
# grace period (which must exceed it, plus the longest publish) while the manifest lands.
REFRESH_AFTER = 600.0
BLOBS = "blobs/"
TASKS = "tasks/"


def task_prefix(task: str) -> str:
    return f"{TASKS}{quote(task, safe='')}/"


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
        data, _ = self.objects.read(f"{BLOBS}{digest}.safetensors")
        if hashlib.sha256(data).hexdigest() != digest:
            raise StoreError(f"{self.uri}/{BLOBS}{digest}.safetensors: content hash mismatch")
        return data

    def put_component(
        self, params: Mapping[str, torch.Tensor], momentum: Mapping[str, torch.Tensor]
    ) -> str:
        return self.put_blob(encode_component(params, momentum))

    def get_component(self, digest: str) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        return decode_component(self.get_blob(digest))

    # -- manifests -----------------------------------------------------------------------
    def read_manifest(self, task: str) -> tuple[dict[str, Any], int] | None:
        """The task's manifest and its generation, or None if never published."""
        key = task_prefix(task) + "manifest.json"
        try:
            data, gen = self.objects.read(key)
        except NotFound:
            return None
        try:
            doc: dict[str, Any] = json.loads(data)
        except json.JSONDecodeError as err:
            raise StoreError(f"{self.uri}/{key}: corrupt manifest: {err}") from err
        return doc, gen

    def publish(self, task: str, manifest: Mapping[str, Any], *, expected: int) -> int:
        """Replace the manifest iff it is still at generation ``expected`` (0 = new task)."""
        missing: list[str] = []
        now = time.time()
        for c in manifest["components"].values():
            key = f"{BLOBS}{c['blob']}.safetensors"
            info = self.objects.stat(key)
            if info is None or (now - info.updated > self.refresh_after and not self._refresh(key)):
                missing.append(str(c["blob"]))
        if missing:
            raise StoreError(f"task {task}: publish refused, blobs not stored: {missing}")
        body = json.dumps(manifest, indent=1, sort_keys=True).encode()
        crash_point("publish:before-manifest")
        gen = self.objects.write(task_prefix(task) + "manifest.json", body, if_generation=expected)
        crash_point("publish:after-manifest")
        return gen

    def tasks(self) -> list[str]:
        return sorted(self.manifest_generations())

    def manifest_generations(self) -> dict[str, int]:
        """task → the generation of its manifest, from one listing (cheap change detection)."""
        out: dict[str, int] = {}
        for info in self.objects.list(TASKS):
            parts = info.key.split("/")
            if len(parts) == 3 and parts[2] == "manifest.json":
                out[unquote(parts[1])] = info.generation
        return out

    def manifests(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for task in self.tasks():
            found = self.read_manifest(task)
            if found is not None:
                out[task] = found[0]
        return out

    # -- resume --------------------------------------------------------------------------
    def save_resume(self, task: str, state: Mapping[str, Any]) -> None:
        self.objects.write(task_prefix(task) + "resume.json", json.dumps(state).encode())

    def load_resume(self, task: str) -> dict[str, Any] | None:
        try:
            data, _ = self.objects.read(task_prefix(task) + "resume.json")
        except NotFound:
            return None
        loaded: dict[str, Any] = json.loads(data)
        return loaded

    def clear_resume(self, task: str) -> None:
        with contextlib.suppress(NotFound):
            self.objects.delete(task_prefix(task) + "resume.json")


def system_from_manifests(manifests: Mapping[str, Mapping[str, Any]]) -> System:
    """Assemble the pure system view (retained paths + their components) from manifests."""
    if not manifests:
        raise StoreError("the store holds no published task (bootstrap a root first)")
    shapes = {json.dumps(m["shape"], sort_keys=True) for m in manifests.values()}
    if len(shapes) != 1:
        raise StoreError(f"manifests disagree on the model shape: {sorted(shapes)}")
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
