"""Making a child path: clone the parent, then mutate hparams, depth, adapters and layers.

The result is a :class:`ChildPlan`: the child's path plus, for every component it owns, the
id of the ancestor component to deep-copy (parameters and optimizer state) or ``None`` for a
fresh initialisation (new head, new adapter, a block no ancestor had). Every other component
is a reference to a frozen shared one. Draw order is fixed, so a seed replays exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from mutask.trainer.evolution.architecture import (
    ENCODER_NORM,
    HEAD,
    ViTShape,
    adapter_index,
    architecture,
)
from mutask.trainer.evolution.hparams import (
    ADAPTER_DIM,
    DEPTH,
    HValue,
    MuSource,
    SearchSpace,
    mutate_keys,
)
from mutask.trainer.evolution.system import Component, Path


@dataclass(frozen=True)
class NewComponent:
    """A component the child owns: copied from ``source`` or freshly initialised."""

    component: Component
    source: str | None


@dataclass(frozen=True)
class ChildPlan:
    """A child path and the components it must materialise before training."""

    path: Path
    new: tuple[NewComponent, ...]

    @property
    def trainable_ids(self) -> list[str]:
        return [n.component.id for n in self.new]


@dataclass(frozen=True)
class MutationContext:
    """What the mutation needs to know about the system, injected by the task iteration."""

    task: str
    num_classes: int
    shape: ViTShape
    space: SearchSpace
    components: Mapping[str, Component]
    is_trainable: Callable[[str], bool]
    lookup: Callable[[str], Path | None]
    adapters: bool = True
    root: Path | None = None  # every lineage starts here, even where ancestors are forgotten
    label_space: str = ""  # what the task's classes mean ("": unknown, never matches)


def _ancestor_component(parent: Path, name: str, ctx: MutationContext) -> str | None:
    """The same-named component of the nearest ancestor that has one."""
    path: Path | None = parent
    seen: set[str] = set()
    while path is not None and path.id not in seen:
        seen.add(path.id)
        cid = path.component(name)
        if cid is not None and cid in ctx.components:
            return cid
        # Ancestors that were never retained are forgotten after their iteration; the root
        # is still an ancestor of every path, so the walk goes on from there.
        path = (ctx.lookup(path.parent) or ctx.root) if path.parent else None
    return None


def _component(ctx: MutationContext, cid: str, name: str, adapter_dim: int) -> Component:
    num_classes = ctx.num_classes if name == HEAD else 0
    dim = adapter_dim if adapter_index(name) is not None else 0
    params = ctx.shape.component_params(name, num_classes=num_classes, adapter_dim=dim)
    space = ctx.label_space if name == HEAD else ""
    return Component(cid, name, params, num_classes=num_classes, adapter_dim=dim, label_space=space)


def head_source(source: str, ctx: MutationContext) -> str | None:
    """Where a child's new head starts: the ancestor's head ``source`` if the child's task
    trains it anyway (its own, trainable), or as a copy when it is another task's head of
    the same label space (same classes, same meaning: a clone, never a reuse); else None,
    a fresh zero-initialised head."""
    head = ctx.components[source]
    if head.num_classes != ctx.num_classes:
        return None
    if ctx.is_trainable(source):
        return source
    same = bool(ctx.label_space) and head.label_space == ctx.label_space
    return source if same else None


def make_child(
    parent: Path,
    child_id: str,
    ctx: MutationContext,
    rng: np.random.Generator,
    data_hparams: Mapping[str, HValue] | None = None,
) -> ChildPlan:
    """Clone ``parent`` into a child of ``ctx.task`` and mutate it (spec "Mutations")."""
    hp: dict[str, HValue] = {**ctx.space.defaults(), **parent.hparams}
    mu = MuSource(hp, ctx.space, rng)
    mutate_keys(hp, ctx.space.model_keys(), ctx.space, mu, rng)
    if data_hparams is not None:
        hp.update(data_hparams)
    num_layers = int(hp[DEPTH])
    adapter_dim = int(hp.get(ADAPTER_DIM, 0))

    adapters = {i for i in parent.adapters if i < num_layers}
    if ctx.adapters and ADAPTER_DIM in ctx.space.ladders:
        for i in range(num_layers):
            if i not in adapters and rng.random() < mu(f"adapter:{i}"):
                adapters.add(i)

    refs: list[tuple[str, str]] = []
    new: list[NewComponent] = []
    for name in architecture(num_layers, adapters):
        source = _ancestor_component(parent, name, ctx)
        if name == HEAD and source is not None:
            source = head_source(source, ctx)  # another task's head is never reused
        clone = (
            source is None
            or name in (ENCODER_NORM, HEAD)
            or ctx.is_trainable(source)
            or rng.random() < mu(f"clone:{name}")
        )
        if not clone and source is not None:
            refs.append((name, source))
            continue
        own_dim = ctx.components[source].adapter_dim if source else adapter_dim
        comp = _component(ctx, f"{child_id}/{name}", name, own_dim)
        new.append(NewComponent(comp, source))
        refs.append((name, comp.id))
    child = Path(child_id, ctx.task, hp, tuple(refs), parent=parent.id)
    return ChildPlan(child, tuple(new))


def fresh_plan(
    path_id: str,
    task: str,
    shape: ViTShape,
    hparams: Mapping[str, HValue],
    num_classes: int,
    num_layers: int | None = None,
    label_space: str = "",
) -> ChildPlan:
    """A path whose every component is freshly initialised (bootstrap of a random root);
    its head's classes mean ``label_space``."""
    hp = dict(hparams)
    depth = num_layers if num_layers is not None else int(hp.get(DEPTH, shape.depth))
    hp[DEPTH] = depth
    new: list[NewComponent] = []
    for name in architecture(depth, frozenset()):
        classes = num_classes if name == HEAD else 0
        params = shape.component_params(name, num_classes=classes)
        space = label_space if name == HEAD else ""
        comp = Component(f"{path_id}/{name}", name, params, classes, label_space=space)
        new.append(NewComponent(comp, None))
    refs = tuple((n.component.name, n.component.id) for n in new)
    return ChildPlan(Path(path_id, task, hp, refs), tuple(new))
