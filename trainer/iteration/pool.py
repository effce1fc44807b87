"""The live component pool: one nn.Module per component, shared by every path that uses it.

Frozen components are loaded once from their blobs and marked ``requires_grad=False``; a
path's model references them (no copies). Components a child owns are deep copies of an
ancestor's module and momentum, or fresh initialisations from a generator seeded by the
component id, so materialising a plan is deterministic; :func:`pool_candidate` turns a
plan into a training :class:`~mutask.trainer.training.Candidate`.

With several devices (see :mod:`mutask.trainer.training.placement`) frozen components are also
replicated once per extra device slot: read-only bit-identical copies, cached until the
component is dropped or replaced.
"""

from __future__ import annotations

import copy
import zlib
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch import nn

from mutask.trainer.evolution import ChildPlan, Component, NewComponent, Path, ViTShape
from mutask.trainer.models import PathModel, build_component
from mutask.trainer.store.layout import blob_key
from mutask.trainer.store.objects import StoreDamaged
from mutask.trainer.store.system_store import SystemStore, param_hash
from mutask.trainer.training import Candidate
from mutask.trainer.training.backend import backend_for
from mutask.trainer.training.candidate import Prefix


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
        # slot (index into DeviceChoice.devices, >= 1) -> component id -> frozen replica
        self.replicas: dict[int, dict[str, nn.Module]] = {}

    def _build(
        self, component: Component, generator: torch.Generator | None, device: torch.device
    ) -> nn.Module:
        return build_component(
            component.name,
            self.shape,
            num_classes=component.num_classes,
            adapter_dim=component.adapter_dim,
            generator=generator,
            device=device,
        )

    def _forget_replicas(self, component_id: str) -> None:
        for cache in self.replicas.values():
            cache.pop(component_id, None)

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
        try:
            module.load_state_dict(params, strict=True)
        except RuntimeError as err:  # a blob of another component, or edited tensors
            first = str(err).splitlines()[0]
            raise StoreDamaged(
                f"{self.store.uri}/{blob_key(blob)}: does not fit component {component.id} "
                f"({component.name}): {first}"
            ) from err
        module.requires_grad_(not frozen)
        self._forget_replicas(component.id)
        self.components[component.id] = component
        self.modules[component.id] = module
        self.momentum[component.id] = {k: v.to(self.device) for k, v in momentum.items()}
        return module

    def materialize(self, new: NewComponent, device: torch.device | None = None) -> nn.Module:
        """Create a child's own component: copy of its source, or a fresh seeded init.

        ``device`` (default the pool's) is where the module and its momentum live; the
        values do not depend on it (copies are exact, inits are drawn on the CPU).
        """
        comp = new.component
        device = self.device if device is None else device
        if new.source is not None:
            module = copy.deepcopy(self.get(new.source)).to(device)
            momentum = {
                k: v.to(device, copy=True) for k, v in self.momentum.get(new.source, {}).items()
            }
        else:
            gen = torch.Generator().manual_seed(component_seed(self.seed, comp.id))
            module = self._build(comp, gen, device)
            momentum = {}
        module.requires_grad_(True)
        self._forget_replicas(comp.id)
        self.components[comp.id] = comp
        self.modules[comp.id] = module
        self.momentum[comp.id] = momentum
        return module

    def model(self, path: Path) -> PathModel:
        return PathModel([(name, self.get(cid)) for name, cid in path.components])

    def replica(self, component_id: str, slot: int, device: torch.device) -> nn.Module:
        """A frozen, read-only copy of a component on ``device`` for device slot ``slot``.

        Slot 0 is the pool's own device: the live module itself. Other slots get a copy made
        once (bit-identical: same parameters, copied) and kept until the component is
        dropped, reloaded or rematerialised.
        """
        if slot == 0:
            return self.get(component_id)
        cache = self.replicas.setdefault(slot, {})
        module = cache.get(component_id)
        if module is None:
            source = self.get(component_id)
            comp = self.components[component_id]
            module = build_component(
                comp.name,
                self.shape,
                num_classes=comp.num_classes,
                adapter_dim=comp.adapter_dim,
                device="meta",
            ).to_empty(device=device)
            module.load_state_dict(source.state_dict(), strict=True)
            module.requires_grad_(False)
            cache[component_id] = module
        return module

    def to_home(self, component_id: str) -> None:
        """Move a live component (module and momentum) back to the pool's device, in place."""
        self.modules[component_id].to(self.device)
        self.momentum[component_id] = {
            k: v.to(self.device) for k, v in self.momentum.get(component_id, {}).items()
        }

    def freeze(self, ids: Iterable[str]) -> None:
        for cid in ids:
            self.modules[cid].requires_grad_(False)

    def drop(self, ids: Iterable[str]) -> None:
        for cid in ids:
            self.modules.pop(cid, None)
            self.momentum.pop(cid, None)
            self._forget_replicas(cid)

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


def frozen_prefix(plan: ChildPlan) -> Prefix:
    """Component ids of the plan's leading run of components it does not own (frozen)."""
    own = set(plan.trainable_ids)
    ids: list[str] = []
    for cid in plan.path.component_ids:
        if cid in own:
            break
        ids.append(cid)
    return tuple(ids)


def pool_candidate(
    pool: ComponentPool,
    plan: ChildPlan,
    score_fn: Callable[[float], float],
    bar: float,
    slot: int = 0,
    device: torch.device | None = None,
) -> Candidate:
    """Materialise a plan's own components and describe it for training, on device slot
    ``slot`` (``device``): there its own components are created and its frozen ones are the
    pool's replicas; slot 0 is the pool's own device and its live modules."""
    own = {n.component.id: pool.materialize(n, device if slot else None) for n in plan.new}
    model = PathModel(
        [
            (name, own[cid] if cid in own else pool.replica(cid, slot, device or pool.device))
            for name, cid in plan.path.components
        ]
    )
    backend_for(device or pool.device).boundary()  # on XLA: its copies, a graph of its own
    return Candidate(
        model=model,
        trainable=list(own.values()),
        momentum=[pool.momentum[c] for c in plan.trainable_ids],
        hparams=plan.path.hparams,
        score_fn=score_fn,
        bar=bar,
        prefix=frozen_prefix(plan),
    )
