"""Levers: which changes make mutask beat a fine-tuned copy per task, one lever at a time.

A root (mu-tiny by default) is trained on Fashion-MNIST at its native 28x28 until it
converges (`mutask bootstrap`'s staged training; or --root-store gives one). Five small
28x28 tasks of this script's own (near and far from the root, one in the root's label
space) are then learned by:

* ``finetune``: a full copy of the root per task with a new head, learning rate picked on
  validation from a grid, each run trained up to --ft-epochs epochs with a convergence stop
  (no gain for --ft-patience epochs), best epoch on validation (training/candidate.py);
* mutask variants, each introducing the five tasks in order into a copy of the root store:
  ``even`` (plain µ2Net: every candidate trains every round), ``halving`` (successive
  halving, no final phase), ``default`` (halving + final phase + heads started from the
  parent's head within a label space: every default), ``no-head-start`` (default without
  the head start).

Reports per task and on average: test accuracy, parameters to serve, training examples,
forgetting (every task re-verified bit-identical at the end), wall time. Results are cached
per variant under --out (delete a file to re-run it). The last line is the ratio of the
default's mean test accuracy to fine-tune's.

The figures in docs/benchmarks.md come from the quality protocol instead
(``benchmarks/quality.py``: its ``mutask-even`` variant is this script's ``even``, on the
protocol's converged root and baselines); this script is the stand-alone, single-seed form.

    python benchmarks/levers.py --threads 1                         # every variant
    python benchmarks/levers.py --variants default --preset mu-small
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from mutask.trainer.config import (
    BUDGETS,
    BudgetConfig,
    DatasetConfig,
    IntroduceConfig,
    ModelConfig,
    SearchConfig,
)
from mutask.trainer.data import Augmenter
from mutask.trainer.iteration.bootstrap import bootstrap_root
from mutask.trainer.iteration.engine import Engine
from mutask.trainer.iteration.pool import component_seed
from mutask.trainer.iteration.taskdata import DeviceTask
from mutask.trainer.models import PathModel, build_component
from mutask.trainer.runtime.device import select_device
from mutask.trainer.store.system_store import SystemStore, system_from_manifests
from mutask.trainer.training import Candidate, Lockstep, TrainSettings, evaluate

ROOT = DatasetConfig(
    source="fashion_mnist", train_split="train[:54000]", validation_split="train[54000:57000]"
)
COARSE = {"0": 0, "2": 0, "4": 0, "6": 0, "1": 1, "3": 1, "5": 2, "7": 2, "9": 2, "8": 3}
TASKS: dict[str, DatasetConfig] = {
    # near the root, same label space (the root's head is a valid start), upside down
    "fashion-rot180": DatasetConfig(
        source="fashion_mnist",
        transform="rot180",
        train_split="train[:54000]",
        validation_split="train[57000:58000]",
        max_train_examples=2000,
    ),
    # near the root, relabelled: tops / bottoms / shoes / bags
    "fashion-coarse": DatasetConfig(
        source="fashion_mnist",
        label_map=COARSE,
        train_split="train[:54000]",
        validation_split="train[58000:59000]",
        max_train_examples=2000,
    ),
    # far: handwritten digits 5..9 (the 5k MNIST subset), transposed
    "mnist-5to9-transpose": DatasetConfig(
        source="mnist", labels=[5, 6, 7, 8, 9], transform="transpose"
    ),
    # far and tiny: sklearn's 8x8 digits, upsampled
    "digits": DatasetConfig(source="digits"),
    # far, all ten digits
    "mnist": DatasetConfig(source="mnist", max_train_examples=2000),
}
FT_GRID = (0.003, 0.01, 0.03)
FT_LADDER = (1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0)  # the grid's extensions


def variants(preset: str) -> dict[str, tuple[BudgetConfig, bool, float]]:
    """Variant name -> (budget, heads started from the parent's head, size scale s)."""
    default = BUDGETS[preset]
    return {
        "even": (replace(default, halving=False, final_training=False), True, 1.0),
        "halving": (replace(default, final_training=False), True, 1.0),
        "default": (default, True, 1.0),
        "no-head-start": (default, False, 1.0),
        "s0.9": (default, True, 0.9),
        "s0.7": (default, True, 0.7),
    }


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/levers"))
    p.add_argument("--preset", default="mu-tiny")
    p.add_argument("--root-store", type=Path, help="an existing root store (copied)")
    p.add_argument("--root-epochs", type=float, default=12.0, help="root's max epochs")
    p.add_argument("--root-train", type=int, help="cap the root's training examples")
    p.add_argument("--variants", default="even,halving,default,no-head-start")
    p.add_argument("--budget", default="default", choices=sorted(BUDGETS), help="base preset")
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--ft-epochs", type=int, default=15)
    p.add_argument("--ft-patience", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-validation", type=int, default=1000)
    return p.parse_args()


def root_store(args: argparse.Namespace, device: Any) -> Path:
    """The root store of this preset (trained once, then reused)."""
    path = args.out / f"root-{args.preset}"
    if args.root_store is not None:
        if not path.exists():
            shutil.copytree(args.root_store, path)
        return path
    if not path.exists():
        cfg = IntroduceConfig(
            task="fashion",
            dataset=replace(ROOT, max_train_examples=args.root_train),
            store=str(path),
            model=ModelConfig(preset=args.preset, max_epochs=args.root_epochs),
            seed=args.seed,
            device="cpu",
        )
        bootstrap_root(Engine(SystemStore.open(str(path)), device, progress_bars=False), cfg)
    return path


def task_config(args: argparse.Namespace, name: str, store: Path, budget: BudgetConfig) -> Any:
    return IntroduceConfig(
        task=name,
        dataset=TASKS[name],
        store=str(store),
        budget=replace(budget, max_validation_examples=args.max_validation),
        seed=args.seed,
        device="cpu",
    )


# -- fine-tune ----------------------------------------------------------------------------
def finetune_one(
    engine: Engine, data: DeviceTask, lr: float, args: argparse.Namespace, name: str
) -> dict[str, float]:
    """A full copy of the root with a new head, trained up to ft_epochs epochs."""
    system, _, pool = engine.load(args.seed)
    parts = [
        (n, copy.deepcopy(pool.get(cid)).requires_grad_(True))
        for n, cid in system.root.components
        if n != "head"
    ]
    gen = torch.Generator().manual_seed(component_seed(args.seed, f"finetune/{name}"))
    head = build_component("head", system.shape, num_classes=data.num_classes, generator=gen)
    model = PathModel([*parts, ("head", head)])
    own = [m for _, m in parts] + [head]
    hparams = {"opt_lr": lr, "opt_lr_warmup_ratio": 0.05, "opt_momentum": 0.9}
    hparams["opt_nesterov"] = False
    n = len(data.train)
    steps = math.ceil(n / 64)
    limit = args.max_validation
    val = data.validation.tensors(limit)
    stream = data.train.stream(64, args.seed, Augmenter({}))
    loop = Lockstep(
        [Candidate(model, own, [{} for _ in own], hparams)],
        iter(stream),
        val,
        TrainSettings(args.ft_epochs, steps),
    )
    best, since, epochs = -1.0, 0, 0
    with loop:
        for _ in range(args.ft_epochs):
            (quality,) = loop.train_round()
            epochs += 1
            best, since = (quality, 0) if quality > best else (best, since + 1)
            if since >= args.ft_patience:
                break
        loop.finish()
    test = evaluate(model, *data.test.tensors())
    params = sum(p.numel() for m in own for p in m.parameters())
    return {"lr": lr, "val": best, "test": test, "examples": epochs * steps * 64, "params": params}


def finetune(args: argparse.Namespace, root: Path, device: Any, names: list[str]) -> dict:
    """Per task the best fine-tune of the grid (extended by one rung, up to twice, while the
    best learning rate is at an edge), by validation accuracy."""
    cache = args.out / f"finetune-{args.preset}.json"
    done: dict[str, Any] = json.loads(cache.read_text()) if cache.exists() else {}
    engine = Engine(SystemStore.open(str(root)), device, progress_bars=False)
    size = engine.load(args.seed)[0].shape.image_size
    out = {}
    for name in names:
        runs = {f"{r['lr']:g}": r for r in done.get(name, {}).get("grid", [])}
        data = engine.task_data(task_config(args, name, root, BudgetConfig()), size)
        grid = list(FT_GRID)
        for _ in range(3):
            for lr in grid:
                if f"{lr:g}" not in runs:
                    t0 = time.perf_counter()
                    runs[f"{lr:g}"] = finetune_one(engine, data, lr, args, name)
                    runs[f"{lr:g}"]["seconds"] = time.perf_counter() - t0
            best = max(runs.values(), key=lambda r: r["val"])
            ladder = sorted(runs.values(), key=lambda r: r["lr"])
            i = FT_LADDER.index(best["lr"])
            if best is ladder[-1] and i + 1 < len(FT_LADDER):
                grid = [FT_LADDER[i + 1]]
            elif best is ladder[0] and i > 0:
                grid = [FT_LADDER[i - 1]]
            else:
                break
        seconds = sum(r.get("seconds", 0.0) for r in runs.values())
        done[name] = {**best, "grid": sorted(runs.values(), key=lambda r: r["lr"])}
        done[name]["seconds"] = seconds
        print(f"finetune {name}: {best}", flush=True)
        cache.write_text(json.dumps(done, indent=1))
        out[name] = done[name]
    return out


# -- mutask -------------------------------------------------------------------------------
def run_variant(
    args: argparse.Namespace, root: Path, device: Any, name: str, names: list[str]
) -> dict:
    cache = args.out / f"mutask-{args.preset}-{args.budget}-{name}.json"
    if cache.exists():
        return dict(json.loads(cache.read_text()))
    budget, head_start, size_scale = variants(args.budget)[name]
    store = args.out / f"store-{args.preset}-{args.budget}-{name}"
    shutil.rmtree(store, ignore_errors=True)
    shutil.copytree(root, store)
    engine = Engine(SystemStore.open(str(store)), device, progress_bars=False, workers=1)
    if not head_start:  # the ablation: no task knows its label space
        plain: Callable[..., DeviceTask] = engine.task_data
        engine.task_data = lambda cfg, size: replace(plain(cfg, size), label_space="")  # type: ignore[method-assign]
    tasks: dict[str, Any] = {}
    for task in names:
        task_cfg = task_config(args, task, store, budget)
        task_cfg = replace(task_cfg, search=SearchConfig(size_scale=size_scale))
        out = engine.introduce(task_cfg, verify=False)
        m = out.manifest
        tasks[task] = {
            "test": m["test_accuracy"],
            "val": out.best.quality,
            "search_val": m["training"]["search_quality"],
            "added": m["params"]["added"],
            "examples": out.examples,
            "steps_per_round": m["training"]["steps_per_round"],
            "seconds": out.seconds,
            "path": out.best.id,
        }
        print(f"{name} {task}: {tasks[task]}", flush=True)
    verified = engine.verify()
    manifests = engine.store.manifests()
    system = system_from_manifests(manifests)
    result = {
        "tasks": tasks,
        "forgetting_ok": all(v.ok for v in verified),
        "system_params": sum(c.num_params for c in system.components.values()),
        "budget": asdict(budget),
    }
    cache.write_text(json.dumps(result, indent=1))
    return result


def table(ft: dict, runs: dict[str, dict], names: list[str]) -> list[str]:
    head = "| method | " + " | ".join(names) + " | mean test | params to serve | examples |"
    lines = [head, "|---" * (len(names) + 4) + "|"]
    ft_params = sum(ft[n]["params"] for n in names)
    ft_examples = sum(ft[n]["examples"] for n in names)
    cells = " | ".join(f"{ft[n]['test']:.3f}" for n in names)
    mean = statistics.mean(ft[n]["test"] for n in names)
    lines.append(f"| fine-tune | {cells} | {mean:.4f} | {ft_params:,} | {ft_examples:,} |")
    for variant, r in runs.items():
        t = r["tasks"]
        cells = " | ".join(f"{t[n]['test']:.3f}" for n in names)
        mean = statistics.mean(t[n]["test"] for n in names)
        examples = sum(t[n]["examples"] for n in names)
        ok = "" if r["forgetting_ok"] else " FORGOT"
        lines.append(
            f"| mutask {variant}{ok} | {cells} | {mean:.4f} | {r['system_params']:,} "
            f"({r['system_params'] / ft_params:.0%}) | {examples:,} "
            f"({examples / ft_examples:.2f}x) |"
        )
    return lines


def candidate_steps(run: dict, task: str) -> int:
    """Steps every candidate of the search took together (the final phase not counted)."""
    b = BudgetConfig(**run["budget"])
    rungs = [b.candidates] * b.validation_rounds
    if b.halving:
        rungs = [max(1, -(-b.candidates // (1 << r))) for r in range(b.validation_rounds)]
    return b.generations * sum(rungs) * int(run["tasks"][task]["steps_per_round"])


def search_table(runs: dict[str, dict], names: list[str]) -> list[str]:
    """Successive halving vs the even split: the search's best validation accuracy and the
    candidate steps it took."""
    lines = [
        "| task | even: best val | even: candidate steps | halving: best val | "
        "halving: candidate steps | fewer steps |",
        "|---|---|---|---|---|---|",
    ]
    for n in names:
        e, h = runs["even"], runs["halving"]
        se, sh = candidate_steps(e, n), candidate_steps(h, n)
        lines.append(
            f"| {n} | {e['tasks'][n]['search_val']:.4f} | {se:,} | "
            f"{h['tasks'][n]['search_val']:.4f} | {sh:,} | {se / sh:.2f}x |"
        )
    mean_e = statistics.mean(runs["even"]["tasks"][n]["search_val"] for n in names)
    mean_h = statistics.mean(runs["halving"]["tasks"][n]["search_val"] for n in names)
    lines.append(f"| mean | {mean_e:.4f} | | {mean_h:.4f} | | |")
    return lines


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    device = select_device("cpu")
    names = args.tasks.split(",")
    root = root_store(args, device)
    print(f"root: test {SystemStore.open(str(root)).read_manifest('__root__')[0]['test_accuracy']}")
    ft = finetune(args, root, device, names)
    runs = {v: run_variant(args, root, device, v, names) for v in args.variants.split(",")}
    lines = table(ft, runs, names)
    if "even" in runs and "halving" in runs:
        lines += ["", *search_table(runs, names)]
    (args.out / f"levers-{args.preset}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if "default" in runs:
        mean_ft = statistics.mean(ft[n]["test"] for n in names)
        mean = statistics.mean(runs["default"]["tasks"][n]["test"] for n in names)
        print(f"mutask default / fine-tune mean test accuracy: {mean / mean_ft:.3f}")


if __name__ == "__main__":
    main()
