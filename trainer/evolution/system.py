"""The shared state of a multitask system: components, paths, and who owns what.

Ownership is derived, never stored: a component is owned by every task whose retained best
path references it (the root model's components by the reserved root owner). A component is
trainable only while nobody but the current task owns it, which is exactly the spec's "locks"
with the task's own lock lifted at the start of its iteration. Garbage collection drops every
component that no retained path references.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from mutask.contract import ROOT_TASK
from mutask.trainer.evolution.architecture import ViTShape, adapter_index
from mutask.trainer.evolution.hparams import HValue

PRIVATE_PREFIX = "private:"


def is_private(task: str) -> bool:
    """Private tasks are never offered as parents to other tasks."""
    return task.startswith(PRIVATE_PREFIX)


@dataclass(frozen=True)
class Component:
    """One named parameter group (its tensors live outside the pure core).

    ``label_space`` (heads only, may be empty: unknown) names what the head's classes mean;
    a head may be cloned as another task's starting point only within one label space.
    """

    id: str
    name: str
    num_params: int
    num_classes: int = 0
    adapter_dim: int = 0
    label_space: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "num_params": self.num_params,
            "num_classes": self.num_classes,
            "adapter_dim": self.adapter_dim,
        }
        if self.label_space:
            out["label_space"] = self.label_space
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Component:
        return cls(
            id=str(d["id"]),
            name=str(d["name"]),
            num_params=int(d["num_params"]),
            num_classes=int(d.get("num_classes", 0)),
            adapter_dim=int(d.get("adapter_dim", 0)),
            label_space=str(d.get("label_space", "")),
        )


@dataclass(frozen=True)
class Path:
    """Hyperparameters + ordered component references + parent + task, and its scores."""

    id: str
    task: str
    hparams: Mapping[str, HValue]
    components: tuple[tuple[str, str], ...]
    parent: str | None = None
    quality: float | None = None
    score: float | None = None

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.components]

    @property
    def component_ids(self) -> list[str]:
        return [cid for _, cid in self.components]

    def component(self, name: str) -> str | None:
        for n, cid in self.components:
            if n == name:
                return cid
        return None

    @property
    def adapters(self) -> frozenset[int]:
        found = (adapter_index(n) for n in self.names)
        return frozenset(i for i in found if i is not None)

    def scored(self, quality: float, score: float) -> Path:
        return replace(self, quality=quality, score=score)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.task,
            "hparams": dict(self.hparams),
            "components": [list(c) for c in self.components],
            "parent": self.parent,
            "quality": self.quality,
            "score": self.score,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Path:
        return cls(
            id=str(d["id"]),
            task=str(d["task"]),
            hparams=dict(d["hparams"]),
            components=tuple((str(n), str(c)) for n, c in d["components"]),
            parent=d.get("parent"),
            quality=d.get("quality"),
            score=d.get("score"),
        )


@dataclass
class System:
    """Retained paths (one best per task, plus the root) and the components they use."""

    shape: ViTShape
    components: dict[str, Component] = field(default_factory=dict)
    best: dict[str, Path] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        if ROOT_TASK not in self.best:
            raise KeyError("the system has no root model yet")
        return self.best[ROOT_TASK]

    @property
    def tasks(self) -> list[str]:
        """Every task with a retained path, in name order (the root excluded)."""
        return sorted(t for t in self.best if t != ROOT_TASK)

    def owners(self, component_id: str, *, exclude: str | None = None) -> frozenset[str]:
        """Tasks whose retained best path references the component (minus ``exclude``)."""
        return frozenset(
            task
            for task, path in self.best.items()
            if task != exclude and component_id in path.component_ids
        )

    def owner_map(self, *, exclude: str | None = None) -> dict[str, frozenset[str]]:
        out: dict[str, set[str]] = {}
        for task, path in self.best.items():
            if task == exclude:
                continue
            for cid in path.component_ids:
                out.setdefault(cid, set()).add(task)
        return {cid: frozenset(tasks) for cid, tasks in out.items()}

    def root_params(self) -> int:
        """P_root: parameters of the root path (the denominator of the size penalty)."""
        return sum(self.components[cid].num_params for cid in self.root.component_ids)

    def root_flops(self) -> int:
        return path_flops(self.root, self.components, self.shape)

    def add_components(self, components: Iterable[Component]) -> None:
        for c in components:
            self.components[c.id] = c

    def referenced(self, extra: Iterable[Path] = ()) -> set[str]:
        refs: set[str] = set()
        for path in [*self.best.values(), *extra]:
            refs.update(path.component_ids)
        return refs

    def retain(self, path: Path) -> None:
        """Make ``path`` its task's best (end of a task iteration): its components become owned."""
        missing = [cid for cid in path.component_ids if cid not in self.components]
        if missing:
            raise KeyError(f"path {path.id} references unknown components {missing}")
        self.best[path.task] = path

    def collect_garbage(self, keep: Iterable[Path] = ()) -> list[str]:
        """Drop components no retained path (nor ``keep``) references; return their ids."""
        refs = self.referenced(keep)
        dropped = sorted(cid for cid in self.components if cid not in refs)
        for cid in dropped:
            del self.components[cid]
        return dropped

    def seeds_for(self, task: str) -> list[Path]:
        """Best paths of all other non-private tasks plus the root, in name order."""
        return [
            path
            for t, path in sorted(self.best.items())
            if t != task and (t == ROOT_TASK or not is_private(t))
        ]

    def iter_paths(self) -> Iterator[Path]:
        yield from self.best.values()


def path_params(path: Path, components: Mapping[str, Component]) -> int:
    return sum(components[cid].num_params for cid in path.component_ids)


def path_flops(path: Path, components: Mapping[str, Component], shape: ViTShape) -> int:
    total = 0
    for name, cid in path.components:
        c = components[cid]
        total += shape.component_flops(name, num_classes=c.num_classes, adapter_dim=c.adapter_dim)
    return total
