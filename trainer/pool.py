"""The live component pool: one nn.Module per component, shared by every path that uses it.

Frozen components are loaded once from their blobs and marked ``requires_grad=False``; a
path's model references them (no copies). Components a child owns are deep copies of an
ancestor's module and momentum, or fresh initialisations from a generator seeded by the
component id, so materialising a plan is deterministic.
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn

from mutask.trainer.evolution import Component, NewComponent, Path, ViTShape
from mutask.trainer.models import PathModel, build_component
from mutask.trainer.store.system_store import SystemStore, param_hash


def component_seed(seed: int, component_id: str) -> int:
    """A stable per-component seed (independent of process and dict order)."""
    return (seed * 1_000_003 + zlib.crc32(component_id.encode())) % (2**63)


class ComponentPool:
    """Modules and optimizer momentum of components, loaded lazily from the store."""

    def __init__(
        self,
        store: SystemStore,
        shape: ViTShape,
        device: torch.device,
        components: Mapping[str, Component],
        entries: Mapping[str, Mapping[str, Any]],
        seed: int = 0,
    ) -> None:
        self.store = store
        self.shape = shape
        self.device = device
        self.components: dict[str, Component] = dict(components)
        self.entries: dict[str, dict[str, Any]] = {k: dict(v) for k, v in entries.items()}
        self.seed = seed
        self.modules: dict[str, nn.Module] = {}
        self.momentum: dict[str, dict[str, torch.Tensor]] = {}

    def _build(self, component: Component, generator: torch.Generator | None) -> nn.Module:
        module = build_component(
            component.name,
            self.shape,
            num_classes=component.num_classes,
            adapter_dim=component.adapter_dim,
            generator=generator,
        )
        return module.to(self.device)

    def get(self, component_id: str) -> nn.Module:
        """The module of a component, loading a published one from its blob on first use."""
        if component_id not in self.modules:
            entry = self.entries.get(component_id)
            if entry is None:
                raise KeyError(f"component {component_id} is neither live nor published")
            self.load(self.components[component_id], str(entry["blob"]), frozen=True)
        return self.modules[component_id]

    def load(self, component: Component, blob: str, *, frozen: bool) -> nn.Module:
        params, momentum = self.store.get_component(blob)
        module = build_component(
            component.name,
            self.shape,
            num_classes=component.num_classes,
            adapter_dim=component.adapter_dim,
            device="meta",  # shapes only: no throw-away random init
        ).to_empty(device=self.device)
        module.load_state_dict(params, strict=True)
        module.requires_grad_(not frozen)
        self.components[component.id] = component
        self.modules[component.id] = module
        self.momentum[component.id] = {k: v.to(self.device) for k, v in momentum.items()}
        return module

    def materialize(self, new: NewComponent) -> nn.Module:
        """Create a child's own component: copy of its source, or a fresh seeded init."""
        comp = new.component
        if new.source is not None:
            module = copy.deepcopy(self.get(new.source))
            momentum = {k: v.clone() for k, v in self.momentum.get(new.source, {}).items()}
        else:
            gen = torch.Generator().manual_seed(component_seed(self.seed, comp.id))
            module = self._build(comp, gen)
            momentum = {}
        module.requires_grad_(True)
        self.components[comp.id] = comp
        self.modules[comp.id] = module
        self.momentum[comp.id] = momentum
        return module

    def model(self, path: Path) -> PathModel:
        return PathModel([(name, self.get(cid)) for name, cid in path.components])

    def freeze(self, ids: Iterable[str]) -> None:
        for cid in ids:
            self.modules[cid].requires_grad_(False)

    def drop(self, ids: Iterable[str]) -> None:
        for cid in ids:
            self.modules.pop(cid, None)
            self.momentum.pop(cid, None)

    def param_hash(self, component_id: str) -> str:
        return param_hash(dict(self.get(component_id).state_dict()))

    def save(self, component_id: str) -> dict[str, Any]:
        """Store a live component as a blob; return its manifest entry."""
        module = self.modules[component_id]
        state = dict(module.state_dict())
        blob = self.store.put_component(state, self.momentum.get(component_id, {}))
        entry = {
            **self.components[component_id].to_dict(),
            "blob": blob,
            "param_hash": param_hash(state),
        }
        self.entries[component_id] = entry
        return entry
