"""What the server serves: every published task's path over one set of frozen modules.

A :class:`Catalog` is an immutable snapshot (task name → :class:`ServedTask`); a reload builds
a new one and the server swaps it in whole, so a request holds the snapshot it was accepted
under and never sees a half-loaded system. :class:`StoreCatalog` builds snapshots from a
store's healthy manifests (the store's damage scan, :mod:`mutask.trainer.store.damage`, leaves
damaged tasks out and the log names them) through the trainer's
:class:`~mutask.trainer.iteration.pool.ComponentPool`: each component is loaded once (from its
blob, frozen, without optimizer momentum) and every task whose path references it holds that
same module. :class:`ExportCatalog` serves files
written by ``mutask export`` instead: standalone models that share nothing.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

import torch
from torch import nn

from mutask.trainer.config import DatasetConfig
from mutask.trainer.data.class_names import class_names
from mutask.trainer.evolution import Path
from mutask.trainer.iteration.pool import ComponentPool
from mutask.trainer.models import exported_metadata, load_exported
from mutask.trainer.store.system_store import SystemStore, blob_index, system_from_manifests

log = logging.getLogger("mutask.serve")


@dataclass(frozen=True)
class ServedTask:
    """One task as a model: its path's component ids and their (shared) modules, in order."""

    name: str
    version: str
    path_id: str
    component_ids: tuple[str, ...]
    modules: tuple[nn.Module, ...]
    num_classes: int
    image_size: int
    class_names: tuple[str, ...] | None = None
    precision: str = "float32"
    published_at: float | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The path's logits for images ``x`` [B, 3, S, S], alone (no sharing)."""
        for module in self.modules:
            x = module(x)
        return x


@dataclass(frozen=True)
class Catalog:
    """An immutable snapshot of the served tasks and the memory they take together."""

    tasks: Mapping[str, ServedTask]
    components: int = 0
    parameters: int = 0

    @staticmethod
    def of(tasks: Sequence[ServedTask]) -> Catalog:
        unique: dict[int, nn.Module] = {id(m): m for t in tasks for m in t.modules}
        params = sum(p.numel() for m in unique.values() for p in m.parameters())
        return Catalog({t.name: t for t in tasks}, len(unique), params)


def _frozen(module: nn.Module) -> nn.Module:
    module.requires_grad_(False)
    return module.eval()


def _dataset(doc: Any) -> DatasetConfig | None:
    if not isinstance(doc, dict):
        return None
    try:
        return DatasetConfig(**doc)
    except TypeError:  # a manifest from a newer trainer with fields we do not know
        return None


def _names(dataset: Any, num_classes: int) -> tuple[str, ...] | None:
    names = class_names(_dataset(dataset), num_classes)
    return tuple(names) if names is not None else None


class StoreCatalog:
    """Snapshots of a store's published tasks, rebuilt when a manifest changes.

    ``refresh()`` lists the manifests' generations (one listing); only when they changed does
    it read the healthy manifests (damaged ones are logged and left out), load the components
    it has not loaded yet, keep the modules of those it has (components are immutable once
    published), drop the ones no task uses any more, and return a new :class:`Catalog`.
    Called from one thread at a time.
    """

    def __init__(self, store: SystemStore, device: torch.device) -> None:
        self.store = store
        self.device = device
        self.pool: ComponentPool | None = None
        self.generations: dict[str, int] | None = None
        self.catalog = Catalog({})

    def refresh(self) -> Catalog | None:
        """A new snapshot if any manifest changed since the last call, else None."""
        generations = self.store.manifest_generations()
        if generations == self.generations:
            return None
        found = self.store.scan()
        for line in found.summary():
            log.warning("%s (not served; `mutask verify` lists the damage)", line)
        manifests = found.manifests
        tasks = self._load(manifests) if manifests else []
        self.catalog = Catalog.of(tasks)
        self.generations = generations
        return self.catalog

    def _load(self, manifests: Mapping[str, Mapping[str, Any]]) -> list[ServedTask]:
        system = system_from_manifests(manifests)
        entries = blob_index(manifests)
        pool = self.pool
        if pool is None or pool.shape != system.shape:
            pool = ComponentPool(
                self.store,
                system.shape,
                self.device,
                system.components,
                entries,
                keep_momentum=False,
            )
        else:
            pool.components.update(system.components)
            pool.entries.update(entries)
        tasks = []
        for name, m in sorted(manifests.items()):
            path = Path.from_dict(m["path"])
            tasks.append(
                ServedTask(
                    name=name,
                    version=str(m.get("iteration", 0)),
                    path_id=path.id,
                    component_ids=tuple(path.component_ids),
                    modules=tuple(_frozen(pool.get(cid)) for cid in path.component_ids),
                    num_classes=int(m["num_classes"]),
                    image_size=system.shape.image_size,
                    class_names=_names(m.get("dataset"), int(m["num_classes"])),
                    precision=str(m.get("precision") or "float32"),
                    published_at=m.get("published_at"),
                )
            )
        used = {cid for t in tasks for cid in t.component_ids}
        pool.drop([cid for cid in pool.modules if cid not in used])
        self.pool = pool
        return tasks


class ExportCatalog:
    """Standalone models written by ``mutask export``, one task each (nothing shared)."""

    def __init__(self, paths: Sequence[FsPath], device: torch.device) -> None:
        self.paths = list(paths)
        self.device = device
        self.catalog: Catalog | None = None

    def refresh(self) -> Catalog | None:
        """The snapshot on the first call (the files are read once), then None."""
        if self.catalog is not None:
            return None
        tasks = [self._load(p) for p in self.paths]
        names = [t.name for t in tasks]
        if len(set(names)) != len(names):
            raise ValueError(f"exported files name the same task twice: {names}")
        self.catalog = Catalog.of(tasks)
        return self.catalog

    def _load(self, file: FsPath) -> ServedTask:
        meta = exported_metadata(file)
        model = load_exported(file).to(self.device)
        names = [name for name, _ in model.items()]
        num_classes = int(meta["mutask.num_classes"])
        shape = json.loads(meta["mutask.shape"])
        try:
            dataset = json.loads(meta.get("dataset", "null"))
        except json.JSONDecodeError:
            dataset = None
        return ServedTask(
            name=meta.get("task") or file.stem,
            version=meta.get("iteration", "1"),
            path_id=meta.get("path", file.stem),
            # ids unique to this file: exported models share no component
            component_ids=tuple(f"{file}#{n}" for n in names),
            modules=tuple(_frozen(m) for _, m in model.items()),
            num_classes=num_classes,
            image_size=int(shape["image_size"]),
            class_names=_names(dataset, num_classes),
        )


def parameter_bytes(catalog: Catalog) -> int:
    """Bytes of the catalog's unique parameters (each shared module counted once)."""
    unique: dict[int, nn.Module] = {id(m): m for t in catalog.tasks.values() for m in t.modules}
    return sum(p.numel() * p.element_size() for m in unique.values() for p in m.parameters())


def params_of(task: ServedTask) -> int:
    """Parameters of one task's path (what a standalone copy of it holds)."""
    return sum(math.prod(p.shape) for m in task.modules for p in m.parameters())
