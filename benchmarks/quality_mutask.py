"""The quality protocol's one door into mutask: data, ViT components, the engine, the store.

Every ``mutask.trainer`` import of the protocol lives here, so that a restructured trainer is
re-pointed by editing these imports only. The rest of the protocol (baselines, caching,
reporting) talks to mutask through the functions below, in plain types.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mutask.trainer.config import (
    BUDGETS,
    BudgetConfig,
    DatasetConfig,
    IntroduceConfig,
    ModelConfig,
    SearchConfig,
)
from mutask.trainer.data import Augmenter, Examples, ImageSplit, SourceCache, load_task, prepare
from mutask.trainer.evolution import ROOT_TASK, architecture, large_space
from mutask.trainer.evolution import Path as EvoPath
from mutask.trainer.iteration.bootstrap import bootstrap_root
from mutask.trainer.iteration.engine import Engine
from mutask.trainer.models import (
    PatchEmbedding,
    PathModel,
    PositionEmbedding,
    build_component,
    get_shape,
    save_exported,
)
from mutask.trainer.runtime.device import select_device
from mutask.trainer.store.system_store import SystemStore, system_from_manifests

PRESET = "mu-tiny"
Tensors = tuple[torch.Tensor, torch.Tensor]


@dataclass(frozen=True)
class TaskTensors:
    """A task's splits as model-ready tensors (float32 [N, 3, S, S] in [-1, 1], int64)."""

    name: str
    num_classes: int
    train: Tensors
    validation: Tensors
    test: Tensors


def default_budget() -> dict[str, Any]:
    """mutask's per-task budget as a new user gets it (BudgetConfig's defaults)."""
    return dataclasses.asdict(BudgetConfig())


def preset_budget(name: str) -> dict[str, Any]:
    """A ``--budget`` preset of mutask (quick, default, thorough) as a budget mapping."""
    return dataclasses.asdict(BUDGETS[name])


def default_search() -> dict[str, Any]:
    return dataclasses.asdict(SearchConfig())


def default_image_size() -> int:
    """mutask's default root image size (0: the bootstrap data's own size)."""
    return ModelConfig().image_size


def default_augmenter() -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """The augmentation a µ2Net child starts from (the search space's default ds_* values)."""
    hparams = large_space(max_layers=1).defaults()
    return Augmenter({k: v for k, v in hparams.items() if k.startswith("ds_")})


def default_hparams() -> dict[str, Any]:
    """The search space's default hyperparameters (what a child of a weights-root inherits)."""
    return dict(large_space(max_layers=1).defaults())


def source_cache() -> SourceCache:
    """A memo of loaded data sources, to pass to :func:`task_tensors`."""
    return SourceCache()


def task_tensors(
    name: str, dataset: Mapping[str, Any], image_size: int, sources: SourceCache | None = None
) -> TaskTensors:
    """Load a task exactly as mutask's engine does (same splits, labels, transform, resize)."""
    data = load_task(name, DatasetConfig(**dataset), cache=sources)

    def tensors(split: Examples) -> Tensors:
        return prepare(ImageSplit(split.images, np.asarray(split.labels)), image_size)

    return TaskTensors(
        name, data.num_classes, tensors(data.train), tensors(data.validation), tensors(data.test)
    )


def vit(
    image_size: int,
    num_classes: int,
    seed: int,
    *,
    adapters: Sequence[int] = (),
    adapter_dim: int = 16,
) -> PathModel:
    """A freshly initialised mu-tiny ViT (seeded), optionally with residual adapters."""
    shape = get_shape(PRESET, image_size)
    gen = torch.Generator().manual_seed(seed)
    parts: list[tuple[str, nn.Module]] = []
    for name in architecture(shape.depth, set(adapters)):
        parts.append(
            (
                name,
                build_component(
                    name, shape, num_classes=num_classes, adapter_dim=adapter_dim, generator=gen
                ),
            )
        )
    return PathModel(parts)


def with_components(model: PathModel, replace: Mapping[str, nn.Module]) -> PathModel:
    """The same path with some components swapped (others shared, not copied)."""
    return PathModel([(n, replace.get(n, m)) for n, m in model.items()])


def insert_adapters(model: PathModel, adapter_dim: int, seed: int) -> PathModel:
    """``model``'s components (shared) with a new zero-output adapter before every block."""
    mods = dict(model.items())
    shape = get_shape(PRESET, image_size_of(model))
    gen = torch.Generator().manual_seed(seed)
    parts: list[tuple[str, nn.Module]] = []
    for name in architecture(shape.depth, set(range(shape.depth))):
        if name in mods:
            parts.append((name, mods[name]))
        else:
            parts.append(
                (name, build_component(name, shape, adapter_dim=adapter_dim, generator=gen))
            )
    return PathModel(parts)


def new_head(model: PathModel, num_classes: int, seed: int) -> nn.Module:
    shape = get_shape(PRESET, image_size_of(model))
    gen = torch.Generator().manual_seed(seed)
    return build_component("head", shape, num_classes=num_classes, generator=gen)


def image_size_of(model: PathModel) -> int:
    """The image size a path model was built for (from its patch grid)."""
    pos, emb = model.component("posembed_input"), model.component("embedding")
    assert isinstance(pos, PositionEmbedding) and isinstance(emb, PatchEmbedding)
    return math.isqrt(int(pos.tokens) - 1) * int(emb.patch)


def save_weights(model: PathModel, path: Path, note: str) -> None:
    """Write ``model`` as a safetensors file that ``mutask introduce --weights`` reads."""
    save_exported(model, path, {"note": note})


# --------------------------------------------------------------------------- the engine


def _engine(
    store: Path,
    workers: int,
    log: Callable[[str], None],
    sinks: Sequence[Callable[[Mapping[str, object]], None]] = (),
) -> Engine:
    return Engine(
        SystemStore.open(str(store)),
        select_device("cpu"),
        sinks=sinks,
        progress_bars=False,
        log=log,
        workers=workers,
        cpu_threads=0,  # leave torch's thread setting (the protocol sets one thread)
    )


def bootstrap(
    store: Path,
    *,
    weights: Path | None,
    image_size: int,
    dataset: Mapping[str, Any] | None = None,
    budget: Mapping[str, Any] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Publish a root: from ``weights`` (the protocol's converged root), or trained by
    mutask itself on ``dataset`` with ``budget`` (what ``--bootstrap-root`` does)."""
    cfg = IntroduceConfig(
        task="root",
        dataset=DatasetConfig(**(dataset or {})),
        store=str(store),
        budget=BudgetConfig(**(budget or {})),
        model=ModelConfig(
            preset=PRESET, image_size=image_size, weights=str(weights) if weights else None
        ),
        seed=seed,
        device="cpu",
    ).validate()
    manifest = bootstrap_root(_engine(store, 1, lambda _m: None), cfg)
    training = manifest.get("training") or {}
    return {
        "test_accuracy": manifest.get("test_accuracy"),
        "examples": int(training.get("examples") or 0),
        "seconds": training.get("seconds"),
    }


def introduce(
    store: Path,
    task: str,
    dataset: Mapping[str, Any],
    *,
    budget: Mapping[str, Any],
    search: Mapping[str, Any],
    seed: int,
    workers: int = 1,
) -> dict[str, Any]:
    """One task iteration with mutask's engine; returns what the protocol reports."""
    cfg = IntroduceConfig(
        task=task,
        dataset=DatasetConfig(**dataset),
        store=str(store),
        budget=BudgetConfig(**budget),
        search=SearchConfig(**search),
        seed=seed,
        device="cpu",
    ).validate()
    events: list[Mapping[str, object]] = []
    engine = _engine(store, workers, lambda _m: None, [events.append])
    started = time.perf_counter()
    out = engine.introduce(cfg, verify=False)
    seconds = time.perf_counter() - started
    training = out.manifest["training"]
    candidates = [e for e in events if e.get("event") == "candidate"]
    return {
        "test_accuracy": float(out.manifest["test_accuracy"]),
        "validation_accuracy": float(out.best.quality or 0.0),
        "params_added": int(out.manifest["params"]["added"]),
        "path_params": int(out.manifest["params"]["total"]),
        "candidates_trained": out.candidates_trained,
        "examples": out.examples,  # every candidate's and the final phase's
        "final_examples": int(training.get("final_examples") or 0),
        "search_validation_accuracy": training.get("search_quality"),
        "steps_per_round": training.get("steps_per_round"),
        "candidate_accuracies": [e.get("best_accuracy") for e in candidates],
        "path": out.manifest["path"],
        "created": out.manifest["created"],
        "seconds": seconds,
    }


def system_report(store: Path, tasks: Sequence[str]) -> dict[str, Any]:
    """Params to serve ``tasks`` (union of their paths' components) and the whole system."""
    manifests = SystemStore.open(str(store)).manifests()
    system = system_from_manifests(manifests)
    used: set[str] = set()
    for t in tasks:
        used.update(system.best[t].component_ids)
    return {
        "serve_params": sum(system.components[c].num_params for c in used),
        "system_params": sum(c.num_params for c in system.components.values()),
        "root_params": system.root_params(),
        "shared_root_components": sorted(n for n, c in system.root.components if c in used),
    }


def verify(store: Path, workers: int = 1) -> dict[str, dict[str, Any]]:
    """mutask's own no-forgetting check of every task: hashes, probe and test accuracy."""
    out = {}
    for v in _engine(store, workers, lambda _m: None).verify():
        if v.task == ROOT_TASK:
            continue
        out[v.task] = {
            "ok": bool(v.ok),
            "test_accuracy_now": v.test_accuracy_now,
            "test_accuracy_recorded": v.test_accuracy_recorded,
        }
    return out


def retained_path(store: Path, task: str) -> tuple[PathModel, list[nn.Module]]:
    """A copy of ``task``'s published path and the copies of the components it created
    (what a final training phase of the retained path would train); the store is not touched."""
    engine = _engine(store, 1, lambda _m: None)
    _, manifests, pool = engine.load()
    manifest = manifests[task]
    path = EvoPath.from_dict(manifest["path"])
    created = set(manifest["created"])
    model = pool.model(path)
    parts: list[tuple[str, nn.Module]] = []
    own: list[nn.Module] = []
    for (name, cid), module in zip(path.components, model.components, strict=True):
        if cid in created:
            module = _clone_trainable(module)
            own.append(module)
        parts.append((name, module))
    return PathModel(parts), own


def _clone_trainable(module: nn.Module) -> nn.Module:
    import copy

    clone = copy.deepcopy(module)
    clone.requires_grad_(True)
    return clone


__all__ = [
    "PRESET",
    "ROOT_TASK",
    "PathModel",
    "TaskTensors",
    "bootstrap",
    "default_augmenter",
    "default_budget",
    "default_hparams",
    "default_image_size",
    "default_search",
    "image_size_of",
    "insert_adapters",
    "introduce",
    "new_head",
    "retained_path",
    "save_weights",
    "source_cache",
    "system_report",
    "task_tensors",
    "verify",
    "vit",
    "with_components",
]
