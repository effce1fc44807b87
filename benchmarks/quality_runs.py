"""mutask's side of the quality protocol: a variant's five introductions, verified, cached.

A :class:`Variant` is mutask's configuration knobs only (``budget.*``, ``search.*``, the image
size and which root it starts from); the default variant is exactly what a new user gets
(every default) on the protocol's converged root. ``root="mutask"`` lets mutask bootstrap its
own root on the root data with its default budget (``--bootstrap-root``). Each task's result
is cached as soon as it is published; the system is verified (hashes, probe, test accuracy)
after the last task. ``final_phase`` measures one lever of issue 9 from outside the trainer:
the retained path's own components trained on to convergence, the store left untouched.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import quality_mutask as qm
from quality_cache import Cache
from quality_suite import Protocol
from quality_train import accuracy, fit

Log = Callable[[str], None]
RootWeights = Callable[[int], Path]  # image size -> the protocol root's weights file


@dataclass(frozen=True)
class Variant:
    """mutask's knobs for one run of the five tasks (empty = mutask's defaults)."""

    label: str
    budget: Mapping[str, Any] = field(default_factory=dict)
    search: Mapping[str, Any] = field(default_factory=dict)
    image_size: int | None = None  # None: the protocol's image size
    # "protocol" (converged, shared with baselines), "mutask" (bootstrapped by mutask) or
    # "own-root" (the root OWN_ROOT's seed 0 bootstrapped)
    root: str = "protocol"

    def key(self, proto: Protocol, budget_base: Mapping[str, Any]) -> str:
        spec = {**asdict(self), "proto": proto.key(), "base": dict(budget_base)}
        spec.pop("label")
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]
        return f"{self.label}-{digest}"


DEFAULTS = Variant("mutask")
# what a new user gets end to end: mutask bootstraps its own root (--bootstrap-root defaults)
OWN_ROOT = Variant("mutask-own-root", image_size=qm.default_image_size(), root="mutask")
# every default on the root OWN_ROOT's seed 0 bootstrapped (the baselines can start from it too)
ON_OWN_ROOT = Variant("mutask-on-own-root", image_size=qm.default_image_size(), root="own-root")


def own_root_store(proto: Protocol, cache: Cache, seed: int = 0) -> Path:
    """The store in which OWN_ROOT's ``seed`` bootstrapped its root."""
    return cache.path("mutask", OWN_ROOT.key(proto, base_budget(proto)), f"seed{seed}", "store")


def own_root_model(proto: Protocol, cache: Cache, seed: int = 0) -> qm.PathModel:
    """The root OWN_ROOT's ``seed`` bootstrapped, as a model (SystemExit if not run yet)."""
    store = own_root_store(proto, cache, seed)
    if not (store / "tasks" / qm.ROOT_TASK / "manifest.json").exists():
        raise SystemExit(f"no root bootstrapped in {store}: run mutask-own-root first")
    return qm.retained_path(store, qm.ROOT_TASK)[0]


def own_root_weights(proto: Protocol, cache: Cache) -> Path:
    """OWN_ROOT's seed-0 root exported as weights (once), as the protocol's root is."""
    out = cache.path("mutask", "own-root-seed0.safetensors")
    if not out.exists():
        qm.save_weights(own_root_model(proto, cache), out, "mutask's own root")
    return out


def base_budget(proto: Protocol) -> dict[str, Any]:
    """mutask's default budget (the quick protocol shrinks it)."""
    from quality_suite import QUICK_BUDGET

    base = qm.default_budget()
    return {**base, **QUICK_BUDGET} if proto.name == "quick" else base


def run(
    variant: Variant,
    proto: Protocol,
    seed: int,
    cache: Cache,
    root_weights: RootWeights,
    log: Log,
    workers: int = 1,
    train: bool = True,
) -> dict[str, Any] | None:
    """The variant's five tasks for one seed (from the cache where finished); with
    ``train=False`` only the cached summary, or None."""
    base = base_budget(proto)
    folder = ("mutask", variant.key(proto, base), f"seed{seed}")
    summary = cache.load(*folder, "summary.json")
    if summary is not None or not train:
        return summary
    store = cache.path(*folder, "store")
    budget = {**base, **variant.budget}
    if proto.name == "quick":  # the smoke run shrinks every variant's budget alike
        from quality_suite import QUICK_BUDGET

        budget.update(QUICK_BUDGET)
    search = {**qm.default_search(), **variant.search}
    size = variant.image_size or proto.image_size
    tasks = list(proto.tasks)
    done = [t for t in tasks if cache.load(*folder, f"{t}.json") is not None]
    published = {p.name for p in store.glob("tasks/*") if (p / "manifest.json").exists()} - {
        qm.ROOT_TASK
    }
    if published != set(done):
        log(f"{variant.label} seed {seed}: store and records disagree (killed run); restarting")
        shutil.rmtree(cache.path(*folder))
        done = []
    root_info = cache.load(*folder, "root.json")
    if root_info is None:
        if store.exists():
            shutil.rmtree(store)
        if variant.root in ("protocol", "own-root"):
            info = qm.bootstrap(
                store,
                weights=root_weights(size)
                if variant.root == "protocol"
                else own_root_weights(proto, cache),
                image_size=size,
                dataset=proto.root_dataset,  # what the root's head was trained on
                seed=seed,
            )
            info["examples"] = 0  # the protocol root's examples are reported on their own
        else:
            root_budget = {**base, **variant.budget}
            info = qm.bootstrap(
                store,
                weights=None,
                image_size=size,
                dataset=proto.root_dataset,
                budget=root_budget,
                seed=seed,
            )
        root_info = cache.save(info, *folder, "root.json")
    records: dict[str, Any] = {}
    for task in tasks:
        rec = cache.load(*folder, f"{task}.json")
        if rec is None:
            log(f"{variant.label} seed {seed}: introducing {task}")
            rec = qm.introduce(
                store,
                task,
                proto.tasks[task],
                budget=budget,
                search=search,
                seed=seed,
                workers=workers,
            )
            rec = cache.save(rec, *folder, f"{task}.json")
        records[task] = rec
    checks = qm.verify(store, workers)
    for task, rec in records.items():
        check = checks[task]
        if not check["ok"]:
            raise AssertionError(f"mutask forgot task {task}: {check}")
        rec["acc_final"] = float(check["test_accuracy_now"])
    summary = {
        "variant": asdict(variant),
        "seed": seed,
        "budget": budget,
        "search": search,
        "image_size": size,
        "root": root_info,
        "tasks": records,
        "forgetting_verified": all(c["ok"] for c in checks.values()),
        **qm.system_report(store, tasks),
    }
    return cache.save(summary, *folder, "summary.json")


def final_phase(
    variant: Variant,
    proto: Protocol,
    seed: int,
    cache: Cache,
    task: str,
    log: Log,
) -> dict[str, Any]:
    """Train the retained path's own components on to convergence (protocol schedule, the
    path's own evolved learning rate); the published system is not modified."""
    base = base_budget(proto)
    folder = ("mutask", variant.key(proto, base), f"seed{seed}")
    rec = cache.load(*folder, f"final-{task}.json")
    if rec is not None:
        return rec
    store = cache.path(*folder, "store")
    model, own = qm.retained_path(store, task)
    size = qm.image_size_of(model)
    data = qm.task_tensors(task, proto.tasks[task], size)
    hp = cache.load(*folder, f"{task}.json")
    assert hp is not None
    lr = float(hp["path"]["hparams"]["opt_lr"])
    log(f"{variant.label} seed {seed}: final phase of {task} at lr {lr:g}")
    before = accuracy(model, data.test)
    f = fit(model, own, data.train, data.validation, replace(proto.task, lr=lr), seed)
    rec = {
        "lr": lr,
        "test_before": before,
        "val_before": f.curve[0][1],
        "test": accuracy(model, data.test),
        "val": f.best_val,
        "examples": f.examples,
        "epochs": f.epochs,
        "best_epoch": f.best_epoch,
        "seconds": f.seconds,
        "curve": f.curve,
    }
    return cache.save(rec, *folder, f"final-{task}.json")
