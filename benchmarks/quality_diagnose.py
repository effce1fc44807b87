"""Where mutask loses against fine-tune on the quality protocol, and what moves it.

Input for issue 9 item 2, measured with mutask's existing knobs only (``budget.*``,
``search.*``, the image size, the root), on seed 0 of the protocol (quality.py; its cache is
shared, so run that first), plus three probes run from outside the trainer:

- ``final phase``: each retained path's own components trained on to convergence (the
  protocol's schedule at the path's evolved learning rate): what a final training phase of
  the retained path would add;
- ``finetune, root head``: fine-tune on the task that shares the root's labels, starting from
  the root's head instead of a zero head (the head-inheritance lever);
- ``finetune, mutask aug``: fine-tune with the augmentation every µ2Net child starts from
  (random-resized crop down to 5 % of the area, horizontal flips): is the default search
  space suited to these 28×28 tasks?

Writes a markdown table and figures; the last line names the best variant's accuracy ratio.

    python benchmarks/quality_diagnose.py        # after benchmarks/quality.py
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import quality_mutask as qm
import quality_suite as qs
import torch
from quality_cache import DEFAULT_CACHE, Cache
from quality_methods import Baselines, NotCached, root, sub_seed
from quality_runs import DEFAULTS, Variant, final_phase, run
from quality_train import accuracy, fit

VARIANTS: tuple[tuple[Variant, str], ...] = (
    (DEFAULTS, "defaults: G=2, K=4, V=2, N=50 (8 candidates x 6,400 examples)"),
    (
        Variant(
            "same-budget-k2", budget={"generations": 1, "candidates": 2, "steps_per_round": 200}
        ),
        "same examples, 2 candidates x 25,600 (G=1, K=2, N=200)",
    ),
    (
        Variant(
            "same-budget-k1", budget={"generations": 1, "candidates": 1, "steps_per_round": 400}
        ),
        "same examples, 1 candidate x 51,200 (G=1, K=1, N=400)",
    ),
    (Variant("steps-x2", budget={"steps_per_round": 100}), "2x examples: N=100"),
    (Variant("steps-x4", budget={"steps_per_round": 200}), "4x examples: N=200"),
    (Variant("image-16", image_size=16), "16 px (the protocol's root trained at 16 px)"),
    (
        Variant("own-root-28", image_size=28, root="mutask"),
        "mutask's default root (--bootstrap-root budget) at 28 px",
    ),
    (
        Variant("mutask-own-root", image_size=qm.default_image_size(), root="mutask"),
        "every default: mutask's own root at 16 px",
    ),
)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--quick", action="store_true", help="the quick protocol (smoke test)")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="finished runs")
    p.add_argument("--out", type=Path, default=Path("benchmarks/out/quality"), help="figures")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument(
        "--variants", default="all", help="comma-separated variant labels to run (default all)"
    )
    p.add_argument("--no-probes", action="store_true", help="skip the three probes")
    return p.parse_args(argv)


def probe_root_head(b: Baselines, cache: Cache, task: str, log: Any) -> dict[str, Any]:
    """Fine-tune from the root with its own head kept (labels match) vs zero-shot."""
    rec = cache.load("probes", "root-head", f"{task}.json")
    if rec is None:
        data = b.task(task)
        lr = b.lr("finetune", task)
        log(f"probe: fine-tune {task} from the root's head at lr {lr:g}")
        model = copy.deepcopy(b.root)
        zero_shot = accuracy(model, data.test)
        f = fit(
            model,
            [model],
            data.train,
            data.validation,
            replace(b.proto.task, lr=lr),
            sub_seed(0, "finetune", task),
        )
        rec = cache.save(
            {
                "lr": lr,
                "zero_shot": zero_shot,
                "val": f.best_val,
                "test": accuracy(model, data.test),
                "examples": f.examples,
                "curve": f.curve,
            },
            "probes",
            "root-head",
            f"{task}.json",
        )
    return rec


def probe_aug(b: Baselines, cache: Cache, task: str, log: Any) -> dict[str, Any]:
    """Fine-tune with mutask's default augmentation at fine-tune's chosen learning rate."""
    rec = cache.load("probes", "mutask-aug", f"{task}.json")
    if rec is None:
        data = b.task(task)
        lr = b.lr("finetune", task)
        log(f"probe: fine-tune {task} with mutask's default augmentation at lr {lr:g}")
        s = sub_seed(0, "finetune", task)
        model, own = b._build("finetune", task, 0, s, data.num_classes)
        f = fit(
            model,
            own,
            data.train,
            data.validation,
            replace(b.proto.task, lr=lr),
            s,
            augment=qm.default_augmenter(),
        )
        rec = cache.save(
            {
                "lr": lr,
                "val": f.best_val,
                "test": accuracy(model, data.test),
                "examples": f.examples,
                "curve": f.curve,
            },
            "probes",
            "mutask-aug",
            f"{task}.json",
        )
    return rec


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:7.0f} s] {msg}", flush=True)

    proto = qs.quick() if args.quick else qs.full()
    base = Cache(args.cache)
    cache = Cache(args.cache / proto.key())
    root_model, _ = root(proto, base, log)

    def weights(size: int) -> Path:
        p = proto.at_size(size)
        root(p, base, log)
        return base.path(p.root_key(), f"{p.root_final()}.safetensors")

    b = Baselines(proto, cache, root_model, log, train=False)
    tasks = list(proto.tasks)
    wanted = None if args.variants == "all" else set(args.variants.split(","))
    results: dict[str, dict[str, Any]] = {}
    for variant, _ in VARIANTS:
        if wanted is None or variant.label in wanted:
            summary = run(variant, proto, 0, cache, weights, log)
            assert summary is not None
            results[variant.label] = summary
    try:
        finetune = {t: b.run("finetune", t, 0, b.lr("finetune", t)) for t in tasks}
        head = {t: b.run("head", t, 0, b.lr("head", t)) for t in tasks}
    except NotCached as err:
        print(f"the baselines' seed 0 is not in the cache ({err}): run quality.py first")
        return 1
    probes: dict[str, dict[str, Any]] = {}
    if not args.no_probes:
        probes["final phase"] = {t: final_phase(DEFAULTS, proto, 0, cache, t, log) for t in tasks}
        probes["finetune, mutask aug"] = {t: probe_aug(b, cache, t, log) for t in tasks}
        same = [
            t
            for t in tasks
            if proto.tasks[t].get("source") == proto.root_dataset["source"]
            and not proto.tasks[t].get("labels")
            and not proto.tasks[t].get("label_map")
        ]
        probes["finetune, root head"] = {t: probe_root_head(b, cache, t, log) for t in same}
    lines = report(results, finetune, head, probes, tasks)
    text = "\n".join(lines)
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "quality_diagnosis.md").write_text(text + "\n")
    (args.out / "quality_diagnosis.json").write_text(
        json.dumps({"variants": results, "probes": probes}, indent=1, default=str)
    )
    figures(results, finetune, head, probes, tasks, args.out)
    ft = statistics.mean(r["test"] for r in finetune.values())
    best = max(results, key=lambda k: _mean_acc(results[k]))
    print(f"total wall time {time.perf_counter() - started:.0f} s")
    print(
        f"diagnosis: best variant {best}: mean test accuracy {_mean_acc(results[best]):.4f} "
        f"= {_mean_acc(results[best]) / ft:.3f}x fine-tune's {ft:.4f} (seed 0)"
    )
    return 0


def _mean_acc(summary: dict[str, Any]) -> float:
    return statistics.mean(float(r["acc_final"]) for r in summary["tasks"].values())


def report(
    results: dict[str, dict[str, Any]],
    finetune: dict[str, Any],
    head: dict[str, Any],
    probes: dict[str, dict[str, Any]],
    tasks: list[str],
) -> list[str]:
    desc = {v.label: d for v, d in VARIANTS}
    lines = [
        "Seed 0. Cells: test accuracy; examples = training examples per task (mutask: every "
        "candidate's).",
        "",
        "| run | " + " | ".join(tasks) + " | mean | examples / task | params to serve |",
        "|---" * (len(tasks) + 4) + "|",
    ]
    for ref, recs in (("finetune (converged)", finetune), ("head (converged)", head)):
        cells = [f"{recs[t]['test']:.3f}" for t in tasks]
        ex = statistics.mean(int(recs[t]["examples"]) for t in tasks)
        lines.append(
            f"| {ref} | "
            + " | ".join(cells)
            + f" | {statistics.mean(recs[t]['test'] for t in tasks):.4f} | {ex:,.0f} | |"
        )
    for label, s in results.items():
        cells = [f"{s['tasks'][t]['acc_final']:.3f}" for t in tasks]
        ex = statistics.mean(int(s["tasks"][t]["examples"]) for t in tasks)
        lines.append(
            f"| mutask {label}: {desc.get(label, '')} | "
            + " | ".join(cells)
            + f" | {_mean_acc(s):.4f} | {ex:,.0f} | {s['serve_params']:,} |"
        )
    for name, recs in probes.items():
        cells = [f"{recs[t]['test']:.3f}" if t in recs else "" for t in tasks]
        mean = statistics.mean(r["test"] for r in recs.values()) if recs else 0.0
        ex = statistics.mean(int(r["examples"]) for r in recs.values()) if recs else 0.0
        lines.append(f"| probe: {name} | " + " | ".join(cells) + f" | {mean:.4f} | {ex:,.0f} | |")
    if "mutask" in results:
        lines += [
            "",
            "Winning paths of the default run (seed 0): evolved hparams and what they train:",
            "",
        ]
        for t in tasks:
            r = results["mutask"]["tasks"][t]
            hp = r["path"]["hparams"]
            keys = (
                "opt_lr",
                "opt_momentum",
                "ds_crop",
                "ds_area_range_min",
                "ds_flip_left_right",
                "num_layers",
            )
            cand = ", ".join(f"{a:.3f}" for a in r["candidate_accuracies"] if a is not None)
            lines.append(
                f"- {t}: "
                + ", ".join(f"{k}={hp.get(k)}" for k in keys)
                + f"; params added {r['params_added']:,}; val {r['validation_accuracy']:.3f}; "
                f"best-so-far val after each candidate: {cand}"
            )
    for t, r in probes.get("finetune, root head", {}).items():
        lines.append(
            f"- root head on {t}: zero-shot test {r['zero_shot']:.3f}; fine-tuned from it "
            f"{r['test']:.3f} vs from a zero head {finetune[t]['test']:.3f}"
        )
    return lines


def figures(
    results: dict[str, dict[str, Any]],
    finetune: dict[str, Any],
    head: dict[str, Any],
    probes: dict[str, dict[str, Any]],
    tasks: list[str],
    out: Path,
) -> None:
    # 1. fine-tune learning curves against mutask's per-candidate and per-task budgets
    fig, axes = plt.subplots(1, len(tasks), figsize=(3.2 * len(tasks), 3.2), sharey=False)
    for ax, t in zip(axes, tasks, strict=True):
        ex, val = zip(*finetune[t]["curve"], strict=True)
        ax.plot([max(1, e) for e in ex], val, marker=".", label="fine-tune (val)")
        if "mutask" in results:
            r = results["mutask"]["tasks"][t]
            per = r["examples"] / max(1, r["candidates_trained"])
            ax.axvline(per, color="tab:red", ls=":", label="one mutask candidate")
            ax.axvline(r["examples"], color="tab:red", ls="--", label="mutask, all candidates")
            ax.plot([per], [r["validation_accuracy"]], "r*", ms=10, label="mutask winner (val)")
        ax.set_xscale("log")
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("training examples", fontsize=8)
    axes[0].set_ylabel("validation accuracy")
    axes[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(out / "quality_diag_curves.png", dpi=110)
    plt.close(fig)
    # 2. the variants: mean accuracy against examples per task
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ft = statistics.mean(r["test"] for r in finetune.values())
    hd = statistics.mean(r["test"] for r in head.values())
    ax.axhline(ft, color="k", ls="--", label=f"fine-tune, converged ({ft:.3f})")
    ax.axhline(hd, color="gray", ls=":", label=f"frozen root + head ({hd:.3f})")
    for label, s in results.items():
        per_task = statistics.mean(int(s["tasks"][t]["examples"]) for t in tasks)
        ax.plot([per_task], [_mean_acc(s)], "o")
        ax.annotate(
            label, (per_task, _mean_acc(s)), fontsize=7, xytext=(4, 2), textcoords="offset points"
        )
    ax.set_xscale("log")
    ax.set_xlabel("mutask training examples per task (all candidates)")
    ax.set_ylabel("mean test accuracy, 5 tasks (seed 0)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "quality_diag_variants.png", dpi=110)
    plt.close(fig)
    # 3. per task: mutask defaults, its final phase, fine-tune
    if "mutask" in results and "final phase" in probes:
        fig, ax = plt.subplots(figsize=(8, 3.8))
        series = {
            "mutask defaults": [results["mutask"]["tasks"][t]["acc_final"] for t in tasks],
            "+ final phase (emulated)": [probes["final phase"][t]["test"] for t in tasks],
            "fine-tune, converged": [finetune[t]["test"] for t in tasks],
        }
        for i, (name, vals) in enumerate(series.items()):
            ax.bar([j + 0.27 * i for j in range(len(tasks))], vals, 0.27, label=name)
        ax.set_xticks([j + 0.27 for j in range(len(tasks))], tasks, fontsize=8)
        ax.set_ylim(0, 1)
        ax.set_ylabel("test accuracy (seed 0)")
        ax.legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        fig.savefig(out / "quality_diag_final_phase.png", dpi=110)
        plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
