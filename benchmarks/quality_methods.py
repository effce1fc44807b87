"""The quality protocol's reference side: the converged root and the five baselines.

The root (mu-tiny, Fashion-MNIST) is trained once to convergence, its learning rate chosen
on validation from short pilot runs; every baseline and mutask start from it. Baselines, per
task: ``finetune`` (a full copy of the root, new head), ``head`` (frozen root, new head),
``adapters`` (frozen root, a residual adapter before every block, new head), ``scratch`` (a
new ViT), ``sequential`` (one copy fine-tuned over the tasks in order, a head per task; earlier
tasks can be forgotten). Each is trained to convergence (quality_train.fit) at the learning rate
chosen on validation from its grid: seed 0 runs the first epochs of the real schedule (pilots)
at every rate of the grid, and the best rate is then trained in full for every seed.
"""

from __future__ import annotations

import copy
import json
import zlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import quality_mutask as qm
import torch
from quality_cache import Cache, lr_name
from quality_suite import LADDER, Protocol
from quality_train import Fit, accuracy, features, fit
from torch import nn

Log = Callable[[str], None]
Record = dict[str, Any]


def sub_seed(seed: int, *parts: str) -> int:
    """A stable seed for one run's random choices (init, batch order)."""
    return (seed * 1_000_003 + zlib.crc32("/".join(parts).encode())) % (2**31)


def numel(*modules: nn.Module) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


def choose(run: Callable[[float], Record], grid: tuple[float, ...], extensions: int) -> float:
    """The grid's best learning rate on validation; the grid grows along ``LADDER`` (at most
    ``extensions`` times) while the best sits at its edge."""
    vals: dict[float, float] = {}

    def val(lr: float) -> float:
        if lr not in vals:
            vals[lr] = float(run(lr)["val"])
        return vals[lr]

    tried = choose_trace(grid, val, extensions)
    return max(tried, key=lambda lr: (vals[lr], -lr))


def choose_trace(
    grid: tuple[float, ...], val: Callable[[float], float] | dict[float, float], extensions: int
) -> list[float]:
    """The learning rates :func:`choose` tries, in order (``val`` gives their scores)."""
    score = val.__getitem__ if isinstance(val, dict) else val
    lrs = sorted(grid)
    for lr in lrs:
        score(lr)
    for _ in range(extensions):
        best = max(lrs, key=lambda lr: (score(lr), -lr))
        i = LADDER.index(best)
        nxt = None
        if best == lrs[0] and i > 0:
            nxt = LADDER[i - 1]
        elif best == lrs[-1] and i + 1 < len(LADDER):
            nxt = LADDER[i + 1]
        if nxt is None:
            break
        score(nxt)
        lrs = sorted([*lrs, nxt])
    return lrs


def _fit_record(f: Fit, lr: float) -> Record:
    return {
        "lr": lr,
        "val": f.best_val,
        "best_epoch": f.best_epoch,
        "epochs": f.epochs,
        "examples": f.examples,
        "seconds": f.seconds,
        "curve": f.curve,
    }


def root(proto: Protocol, cache: Cache, log: Log) -> tuple[qm.PathModel, Record]:
    """The converged root at the protocol's image size (trained once, then from the cache)."""
    folder = proto.root_key()
    data = qm.task_tensors("root", proto.root_dataset, proto.image_size)
    model = qm.vit(proto.image_size, data.num_classes, seed=0)
    final = proto.root_final()
    info = cache.load(folder, f"{final}.json")
    if info is not None:
        model.load_state_dict(torch.load(cache.path(folder, f"{final}.pt")))
        return model, info

    def pilot(lr: float) -> Record:
        rec = cache.load(folder, lr_name(lr))
        if rec is None:
            log(f"root {proto.image_size}px: pilot lr {lr:g}")
            m = qm.vit(proto.image_size, data.num_classes, seed=0)
            sched = replace(proto.root, lr=lr, max_epochs=proto.root_pilot_epochs, patience=99)
            rec = cache.save(
                _fit_record(fit(m, [m], data.train, data.validation, sched, 0), lr),
                folder,
                lr_name(lr),
            )
        return rec

    lr = choose(pilot, proto.grids["root"], proto.max_grid_extensions)
    log(f"root {proto.image_size}px: training to convergence at lr {lr:g}")
    f = fit(model, [model], data.train, data.validation, replace(proto.root, lr=lr), 0, log=log)
    pilots = [cache.load(folder, p.name) for p in sorted(cache.path(folder).glob("lr*.json"))]
    info = {
        **_fit_record(f, lr),
        "test": accuracy(model, data.test),
        "params": numel(model),
        "head_params": numel(model.component("head")),
        "pilot_examples": sum(int(p["examples"]) for p in pilots if p),
        "pilot_seconds": sum(float(p["seconds"]) for p in pilots if p),
        "pilots": {str(p["lr"]): p["val"] for p in pilots if p},
        "train_examples": int(data.train[0].shape[0]),
    }
    torch.save(model.state_dict(), cache.path(folder, f"{final}.pt"))
    qm.save_weights(model, cache.path(folder, f"{final}.safetensors"), "quality protocol root")
    cache.save(info, folder, f"{final}.json")
    log(f"root {proto.image_size}px: val {info['val']:.4f}, test {info['test']:.4f}")
    return model, info


class NotCached(LookupError):
    """A run is not in the cache and this Baselines may not train (report-only)."""


class Baselines:
    """Runs (or reads from the cache) every baseline on every task for one protocol;
    with ``train=False`` it only reads, raising NotCached for what is missing."""

    def __init__(
        self, proto: Protocol, cache: Cache, root_model: qm.PathModel, log: Log, train: bool = True
    ) -> None:
        self.proto, self.cache, self.root, self.log = proto, cache, root_model, log
        self.train = train
        self.folder = proto.baseline_key()
        self.data: dict[str, qm.TaskTensors] = {}
        self.sources = qm.source_cache()
        self._features: dict[str, tuple[torch.Tensor, ...]] = {}
        self.trunk_params = numel(root_model) - numel(root_model.component("head"))

    def task(self, name: str) -> qm.TaskTensors:
        if name not in self.data:
            self.data[name] = qm.task_tensors(
                name, self.proto.tasks[name], self.proto.image_size, self.sources
            )
        return self.data[name]

    # -- one run ---------------------------------------------------------------------------
    def run(self, method: str, task: str, seed: int, lr: float, pilot: bool = False) -> Record:
        """One run, trained in full or (``pilot``) for the first epochs of its schedule."""
        sub = f"pilot-e{self.proto.task_pilot_epochs}" if pilot else f"seed{seed}"
        folder = (self.folder, method, task, sub)
        rec = self.cache.load(*folder, lr_name(lr))
        if rec is not None:
            return rec
        if not self.train:
            raise NotCached("/".join((*folder, lr_name(lr))))
        self.log(f"{method} {task} {sub} lr {lr:g}")
        data = self.task(task)
        s = sub_seed(seed, method, task)
        sched = replace(self.proto.task, lr=lr)
        stop = self.proto.task_pilot_epochs if pilot else None
        if method == "head":
            head = qm.new_head(self.root, data.num_classes, s)
            ftr, fva, fte = self._trunk_features(task)
            f = fit(
                head,
                [head],
                (ftr, data.train[1]),
                (fva, data.validation[1]),
                sched,
                s,
                stop_epoch=stop,
            )
            rec = {**_fit_record(f, lr), "test": accuracy(head, (fte, data.test[1]))}
            rec["task_params"] = numel(head)
        else:
            model, own = self._build(method, task, seed, s, data.num_classes)
            f = fit(model, own, data.train, data.validation, sched, s, stop_epoch=stop)
            rec = {**_fit_record(f, lr), "test": accuracy(model, data.test)}
            rec["task_params"] = numel(*own) if method != "sequential" else numel(own[-1])
            if method == "sequential" and not pilot:
                self.cache.path(*folder).mkdir(parents=True, exist_ok=True)
                torch.save(model.state_dict(), self.cache.path(*folder, f"lr{lr:g}.pt"))
        rec.update(method=method, task=task, seed=seed, pilot=pilot)
        return self.cache.save(rec, *folder, lr_name(lr))

    def _build(
        self, method: str, task: str, seed: int, s: int, classes: int
    ) -> tuple[qm.PathModel, list[nn.Module]]:
        head = qm.new_head(self.root, classes, s)
        if method == "scratch":
            model = qm.vit(self.proto.image_size, classes, seed=s)
            return model, [model]
        if method == "finetune":
            model = qm.with_components(copy.deepcopy(self.root), {"head": head})
            return model, [model]
        if method == "adapters":
            model = qm.insert_adapters(
                qm.with_components(self.root, {"head": head}), self.proto.adapter_dim, s
            )
            own = [m for n, m in model.items() if n.startswith("residual_adapter_")]
            return model, [*own, head]
        if method == "sequential":
            model = qm.with_components(copy.deepcopy(self.root), {"head": head})
            prev = self._previous(task, seed)
            if prev is not None:
                state = torch.load(prev)
                model.load_state_dict(
                    {k: v for k, v in state.items() if not k.startswith(self._head_prefix(model))},
                    strict=False,
                )
            return model, [*[m for n, m in model.items() if n != "head"], head]
        raise ValueError(f"unknown baseline {method!r}")

    @staticmethod
    def _head_prefix(model: qm.PathModel) -> str:
        return f"components.{model.index('head')}."

    def _previous(self, task: str, seed: int) -> Any:
        names = list(self.proto.tasks)
        i = names.index(task)
        if i == 0:
            return None
        prev = names[i - 1]
        lr = self.lr("sequential", prev)
        self.run("sequential", prev, seed, lr)
        return self.cache.path(self.folder, "sequential", prev, f"seed{seed}", f"lr{lr:g}.pt")

    def _trunk_features(self, task: str) -> tuple[torch.Tensor, ...]:
        if task not in self._features:
            data = self.task(task)
            stop = self.root.index("head")
            self._features[task] = tuple(
                features(self.root, x, stop) for x, _ in (data.train, data.validation, data.test)
            )
        return self._features[task]

    # -- learning-rate choice and seeds ----------------------------------------------------
    def lr(self, method: str, task: str) -> float:
        """The learning rate chosen on validation (running seed 0's pilots if needed)."""
        return float(self.choice(method, task)["lr"])

    def choice(self, method: str, task: str) -> Record:
        """The grid's pilots and the chosen rate (recomputed if the grid settings changed)."""
        p = self.proto
        settings = {
            "grid": list(p.grids[method]),
            "extensions": p.max_grid_extensions,
            "pilot_epochs": p.task_pilot_epochs,
        }
        choice = self.cache.load(self.folder, method, task, "choice.json")
        if choice is not None and choice.get("settings") == settings:
            return choice
        if not self.train:
            raise NotCached(f"{self.folder}/{method}/{task}/choice.json")
        lr = choose(
            lambda lr: self.run(method, task, 0, lr, pilot=True),
            p.grids[method],
            p.max_grid_extensions,
        )
        pilots = self.cache.path(self.folder, method, task, f"pilot-e{p.task_pilot_epochs}")
        runs = [json.loads(f.read_text()) for f in sorted(pilots.glob("lr*.json"))]
        tried = set(
            choose_trace(
                p.grids[method], {float(r["lr"]): r["val"] for r in runs}, p.max_grid_extensions
            )
        )
        runs = [r for r in runs if float(r["lr"]) in tried]
        return self.cache.save(
            {
                "lr": lr,
                "settings": settings,
                "grid": {f"{float(r['lr']):g}": r["val"] for r in runs},
                "pilot_examples": sum(int(r["examples"]) for r in runs),
                "pilot_seconds": sum(float(r["seconds"]) for r in runs),
            },
            self.folder,
            method,
            task,
            "choice.json",
        )

    def method(self, method: str, seed: int) -> list[Record]:
        """Every task of the suite under ``method`` for one seed (chosen rates)."""
        out = []
        for task in self.proto.tasks:
            rec = dict(self.run(method, task, seed, self.lr(method, task)))
            rec["acc_final"] = rec["test"]
            out.append(rec)
        if method == "sequential":
            self._forgetting(out, seed)
        return out

    def _forgetting(self, recs: list[Record], seed: int) -> None:
        """Test accuracy of each task's head on the trunk left after the last task."""
        last = recs[-1]
        final = torch.load(
            self.cache.path(
                self.folder, "sequential", last["task"], f"seed{seed}", f"lr{last['lr']:g}.pt"
            )
        )
        for rec in recs:
            data = self.task(rec["task"])
            model, _ = self._build("sequential", rec["task"], seed, 0, data.num_classes)
            own = torch.load(
                self.cache.path(
                    self.folder, "sequential", rec["task"], f"seed{seed}", f"lr{rec['lr']:g}.pt"
                )
            )
            prefix = self._head_prefix(model)
            model.load_state_dict(
                {k: (own[k] if k.startswith(prefix) else v) for k, v in final.items()}
            )
            rec["acc_final"] = accuracy(model, data.test)

    def shared_params(self, method: str) -> int:
        """Parameters every task of ``method`` shares (the frozen or sequential trunk)."""
        return self.trunk_params if method in ("head", "adapters", "sequential") else 0
