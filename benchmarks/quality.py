"""Quality suite: does mutask learn a task sequence as well as the obvious alternatives, per
parameter, without forgetting?

A root ViT is bootstrapped on MNIST; then 6 tasks from offline data (sklearn digits, the
MNIST subset, Fashion-MNIST when installed, and derived tasks: label subsets, coarse
relabelings, transformed images) are introduced one after another. Methods, each with the
same number of training examples per task: mutask (s = 1 and one s < 1), a fine-tuned
full copy per task, frozen root + new head, adapters only, and one model fine-tuned
sequentially on all tasks. Reports test accuracy, params added / total, forgetting and
training time per task and on average (mean ± std over seeds), writes plots and a
markdown table, and prints the headline ratios last.

    python benchmarks/quality.py --quick                  # smoke run, about a minute
    python benchmarks/quality.py --seeds 3 --steps 10 --threads 1 --out docs/img  # documented
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from quality_methods import (
    BASELINES,
    Task,
    TaskRecord,
    run_baseline,
    run_mutask,
    steps_per_task,
)

from mutask.trainer.config import (
    BudgetConfig,
    DatasetConfig,
    IntroduceConfig,
    ModelConfig,
)
from mutask.trainer.data.builtin import data_dirs
from mutask.trainer.demo.report import plot_sharing
from mutask.trainer.iteration.bootstrap import bootstrap_root
from mutask.trainer.iteration.engine import Engine
from mutask.trainer.runtime.device import select_device
from mutask.trainer.store.system_store import SystemStore

ROOT = DatasetConfig(source="mnist", train_split="train[:90%]", validation_split="train[90%:]")
PARITY = {str(i): i % 2 for i in range(10)}
# T-shirt, pullover, coat, shirt -> tops; trouser, dress -> bottoms; shoes; bag
FASHION_COARSE = {"0": 0, "2": 0, "4": 0, "6": 0, "1": 1, "3": 1, "5": 2, "7": 2, "9": 2, "8": 3}


def task_list(max_train: int, fashion: bool) -> list[Task]:
    """The 6-task sequence (Fashion-MNIST tasks replaced by derived digits ones if absent)."""
    test = "test[:2000]"
    tasks: list[Task] = [
        ("digits", DatasetConfig(source="digits", max_train_examples=max_train)),
        (
            "mnist-rot90-0to4",
            DatasetConfig(
                source="mnist",
                labels=[0, 1, 2, 3, 4],
                transform="rot90",
                max_train_examples=max_train,
            ),
        ),
        (
            "digits-parity",
            DatasetConfig(source="digits", label_map=PARITY, max_train_examples=max_train),
        ),
    ]
    if fashion:
        tasks += [
            (
                "fashion",
                DatasetConfig(
                    source="fashion_mnist", test_split=test, max_train_examples=max_train
                ),
            ),
            (
                "fashion-coarse",
                DatasetConfig(
                    source="fashion_mnist",
                    label_map=FASHION_COARSE,
                    test_split=test,
                    max_train_examples=max_train,
                ),
            ),
            (
                "fashion-shoes-flip",
                DatasetConfig(
                    source="fashion_mnist",
                    labels=[5, 7, 9],
                    transform="flip_ud",
                    test_split=test,
                    max_train_examples=max_train,
                ),
            ),
        ]
    else:
        tasks += [
            (
                "digits-invert",
                DatasetConfig(source="digits", transform="invert", max_train_examples=max_train),
            ),
            (
                "mnist-5to9-transpose",
                DatasetConfig(
                    source="mnist",
                    labels=[5, 6, 7, 8, 9],
                    transform="transpose",
                    max_train_examples=max_train,
                ),
            ),
            (
                "digits-0to4-rot180",
                DatasetConfig(
                    source="digits",
                    labels=[0, 1, 2, 3, 4],
                    transform="rot180",
                    max_train_examples=max_train,
                ),
            ),
        ]
    return tasks


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="tiny budget (smoke test)")
    p.add_argument("--seeds", type=int, default=1, help="number of seeds (mean ± std)")
    p.add_argument("--size-scale", type=float, default=0.7, help="the mutask s < 1 run")
    p.add_argument("--device", default="cpu", help="cpu | cuda[:N] | auto")
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/quality"))
    p.add_argument("--steps", type=int, default=None, help="override steps per round")
    p.add_argument("--tasks", type=int, default=6, help="use the first N tasks")
    p.add_argument("--no-fashion", action="store_true", help="digits/MNIST tasks only")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--from-results",
        type=Path,
        help="re-print the tables of a quality_results.json (no training, no plots)",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="mutask candidates trained at once (default 1: every method on one "
        "core, so training times compare; results are the same for any value)",
    )
    return p.parse_args(argv)


def base_config(args: argparse.Namespace, seed: int, store: Path) -> IntroduceConfig:
    if args.quick:
        budget = BudgetConfig(
            generations=1,
            candidates=2,
            validation_rounds=1,
            steps_per_round=4,
            batch_size=16,
            max_validation_examples=100,
        )
    else:
        budget = BudgetConfig(
            generations=2,
            candidates=4,
            validation_rounds=2,
            steps_per_round=25,
            batch_size=64,
            max_validation_examples=500,
        )
    if args.steps:
        budget = replace(budget, steps_per_round=args.steps)
    return IntroduceConfig(
        task="mnist",
        dataset=ROOT,
        store=str(store),
        budget=budget,
        model=ModelConfig(preset="mu-tiny", image_size=16),
        seed=seed,
        device=args.device,
    )


def run_seed(
    args: argparse.Namespace, seed: int, work: Path, tasks: Sequence[Task]
) -> tuple[list[TaskRecord], dict[str, object]]:
    """Every method on one seed; also returns the final mutask systems (for the graph)."""
    device = select_device(args.device)
    root_store = work / f"root-{seed}"
    base = base_config(args, seed, root_store)
    root_budget = replace(
        base.budget, generations=1, validation_rounds=2, steps_per_round=20 if args.quick else 300
    )
    bootstrap_root(
        Engine(SystemStore.open(str(root_store)), device, progress_bars=False, log=print),
        replace(base, budget=root_budget),
    )
    records: list[TaskRecord] = []
    systems: dict[str, object] = {}
    for s in (1.0, args.size_scale):
        recs, system = run_mutask(
            root_store, work / f"mutask-{s:g}-{seed}", base, tasks, s, device, args.workers
        )
        records += recs
        systems[recs[0].method] = system
        slug = recs[0].method.replace(" ", "_").replace("=", "")
        manifests = SystemStore.open(str(work / f"mutask-{s:g}-{seed}")).manifests()
        (args.out / f"quality_system_{slug}_seed{seed}.json").write_text(
            json.dumps(manifests, indent=1, default=str)
        )
        print(
            f"  seed {seed} {recs[0].method}: avg acc "
            f"{statistics.mean(r.acc_final for r in recs):.4f}"
        )
    for kind in BASELINES:
        recs = run_baseline(kind, root_store, base, tasks, device)
        records += recs
        print(f"  seed {seed} {kind}: avg acc {statistics.mean(r.acc_final for r in recs):.4f}")
    return records, systems


def _ms(values: Sequence[float], fmt: str = ".4f") -> str:
    mean = statistics.mean(values)
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:{fmt}} ± {spread:{fmt}}"


def summarise(
    records: Sequence[TaskRecord], tasks: Sequence[Task], seeds: int
) -> tuple[list[str], dict[str, dict[str, list[float]]]]:
    """Markdown tables (per task and averages) and per-method per-seed aggregates."""
    methods = list(dict.fromkeys(r.method for r in records))
    names = [t for t, _ in tasks]
    per: dict[str, dict[str, list[float]]] = {}
    lines = [
        "| method | " + " | ".join(names) + " | avg acc | forgetting | total params |"
        " params added / task | train s |",
        "|---" * (len(names) + 6) + "|",
    ]
    for m in methods:
        rs = [r for r in records if r.method == m]
        by_seed = [rs[i * len(names) : (i + 1) * len(names)] for i in range(seeds)]
        agg = {
            "acc": [statistics.mean(r.acc_final for r in s) for s in by_seed],
            "forgetting": [statistics.mean(r.forgetting for r in s) for s in by_seed],
            "total": [float(s[-1].total_params) for s in by_seed],
            "added": [statistics.mean(r.params_added for r in s) for s in by_seed],
            "seconds": [sum(r.seconds for r in s) for s in by_seed],
        }
        per[m] = agg
        cells = [_ms([r.acc_final for r in rs if r.task == t], ".3f") for t in names]
        lines.append(
            f"| {m} | " + " | ".join(cells) + f" | {_ms(agg['acc'])} | "
            f"{_ms(agg['forgetting'])} | {statistics.mean(agg['total']):,.0f} | "
            f"{statistics.mean(agg['added']):,.0f} | {_ms(agg['seconds'], '.0f')} |"
        )
    lines += [
        "",
        "Per task, mean over seeds: parameters added / forgetting (accuracy right after "
        "the task minus after the last task) / training seconds.",
        "",
        "| method | " + " | ".join(names) + " |",
        "|---" * (len(names) + 1) + "|",
    ]
    for m in methods:
        cells = []
        for t in names:
            rs = [r for r in records if r.method == m and r.task == t]
            cells.append(
                f"+{statistics.mean(r.params_added for r in rs):,.0f} / "
                f"{statistics.mean(r.forgetting for r in rs):.3f} / "
                f"{statistics.mean(r.seconds for r in rs):.1f} s"
            )
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines, per


def plot(
    records: Sequence[TaskRecord],
    per: dict[str, dict[str, list[float]]],
    systems: dict[str, object],
    out: Path,
    tasks: Sequence[Task],
    seeds: int,
) -> None:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m, agg in per.items():
        ax.errorbar(
            statistics.mean(agg["total"]),
            statistics.mean(agg["acc"]),
            yerr=statistics.stdev(agg["acc"]) if seeds > 1 else 0.0,
            fmt="o",
            capsize=4,
            label=m,
        )
    ax.set_xscale("log")
    ax.set_xlabel("total system parameters after all tasks (root included)")
    ax.set_ylabel("average test accuracy")
    ax.set_title("Accuracy vs parameters")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "quality_accuracy_vs_params.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    n = len(tasks)
    for m in per:
        first = [r for r in records if r.method == m][:n]  # seed 0
        ax.plot(range(1, n + 1), [r.total_params for r in first], marker="o", label=m)
    ax.set_xlabel("tasks introduced")
    ax.set_ylabel("system parameters")
    ax.set_yscale("log")
    ax.set_title("System size vs number of tasks (seed 0)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "quality_params_vs_tasks.png", dpi=120)
    plt.close(fig)
    for name, system in systems.items():
        slug = name.replace(" ", "_").replace("=", "")
        try:
            plot_sharing(system, out / f"quality_sharing_{slug}.png")  # type: ignore[arg-type]
        except Exception as err:  # the tables above are still worth having
            print(f"warning: sharing graph of {name} failed: {err!r}")


def tables_from_results(path: Path) -> str:
    """The markdown tables of an earlier run's ``quality_results.json``."""
    records = [TaskRecord(**r) for r in json.loads(path.read_text())]
    names = list(dict.fromkeys(r.task for r in records))
    first = records[0].method
    seeds = sum(1 for r in records if r.method == first) // len(names)
    lines, _ = summarise(records, [(n, DatasetConfig()) for n in names], seeds)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_results is not None:
        print(tables_from_results(args.from_results))
        return 0
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    fashion = not args.no_fashion and any(
        (d / f).exists()
        for d in data_dirs("fashion-mnist")
        for f in ("train-images-idx3-ubyte.gz", "train-images-idx3-ubyte")
    )
    tasks = task_list(64 if args.quick else 1000, fashion)[: args.tasks]
    args.out.mkdir(parents=True, exist_ok=True)
    records: list[TaskRecord] = []
    systems: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            recs, sys_ = run_seed(args, seed, Path(tmp), tasks)
            records += recs
            if seed == 0:
                systems = sys_
    budget = base_config(args, 0, Path(tmp)).budget
    lines, per = summarise(records, tasks, args.seeds)
    examples = steps_per_task(budget) * budget.batch_size
    header = [
        f"Tasks: {', '.join(t for t, _ in tasks)}; {args.seeds} seed(s); "
        f"{examples:,} training examples per task for every method; mu-tiny @ 16 px, "
        f"device {args.device}. Cells: test accuracy after the last task, mean ± std.",
        "",
    ]
    table = "\n".join(header + lines)
    print(table)
    (args.out / "quality_table.md").write_text(table + "\n")
    results = json.dumps([asdict(r) for r in records], indent=1)
    (args.out / "quality_results.json").write_text(results)
    plot(records, per, systems, args.out, tasks, args.seeds)
    mutask_forgetting = [r.forgetting for r in records if r.method.startswith("mutask")]
    assert all(f == 0.0 for f in mutask_forgetting), "mutask forgetting must be exactly 0"
    ft_acc = statistics.mean(per["finetune"]["acc"])
    ft_total = statistics.mean(per["finetune"]["total"])
    verdicts = []
    for m in [m for m in per if m.startswith("mutask")]:
        acc = statistics.mean(per[m]["acc"]) / ft_acc
        params = statistics.mean(per[m]["total"]) / ft_total
        met = "MET" if acc >= 1.0 and params <= 0.4 else "NOT met"
        verdicts.append(
            f"{m}: accuracy ratio {acc:.3f}, param ratio {params:.3f} "
            f"(target acc >= 1 with params <= 0.40: {met})"
        )
    print(f"total wall time {time.perf_counter() - started:.0f} s")
    print("headline vs fine-tune per task: " + "; ".join(verdicts))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
