"""The quality protocol's tables, plots and headline, from per-task rows of every method.

A row is one (method, task, seed): ``acc_own`` (test accuracy right after the task was
trained), ``acc_final`` (after every task), ``examples`` (training examples spent on the task,
every candidate's for mutask), ``search_examples`` (the learning-rate search included),
``seconds`` and ``task_params`` (parameters only this task needs). ``shared`` gives each
method's parameters that all tasks share (the frozen or sequential trunk); a row may instead
carry ``serve_params``, the method's own count for the seed (mutask: its paths' union).
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

Row = Mapping[str, Any]


def _ms(values: Sequence[float], fmt: str = ".3f") -> str:
    if not values:
        return "-"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):{fmt}} ± {sd:{fmt}}"


def aggregate(rows: Sequence[Row], shared: Mapping[str, int]) -> dict[str, dict[str, Any]]:
    """Per method: per-seed means over tasks, per-task values over seeds, costs."""
    out: dict[str, dict[str, Any]] = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == method]
        seeds = sorted({r["seed"] for r in rs})
        tasks = list(dict.fromkeys(r["task"] for r in rs))
        by_seed = {s: [r for r in rs if r["seed"] == s] for s in seeds}
        complete = [s for s in seeds if len(by_seed[s]) == len(tasks)]
        out[method] = {
            "seeds": complete,
            "acc": [statistics.mean(r["acc_final"] for r in by_seed[s]) for s in complete],
            "forgetting": [
                statistics.mean(r["acc_own"] - r["acc_final"] for r in by_seed[s]) for s in complete
            ],
            "params": [_serve_params(by_seed[s], shared.get(method, 0)) for s in complete],
            "examples": [sum(int(r["examples"]) for r in by_seed[s]) for s in complete],
            "search_examples": [
                sum(int(r.get("search_examples", r["examples"])) for r in by_seed[s])
                for s in complete
            ],
            "seconds": [sum(float(r["seconds"]) for r in by_seed[s]) for s in complete],
            "per_task": {t: [r["acc_final"] for r in rs if r["task"] == t] for t in tasks},
            "per_task_examples": {
                t: statistics.mean(int(r["examples"]) for r in rs if r["task"] == t) for t in tasks
            },
        }
    return out


def _serve_params(rows: Sequence[Row], shared: int) -> int:
    """Rows may carry the system's own count (mutask: the union of the tasks' paths)."""
    if "serve_params" in rows[0]:
        return int(rows[0]["serve_params"])
    return shared + sum(int(r["task_params"]) for r in rows)


def tables(agg: Mapping[str, Mapping[str, Any]], tasks: Sequence[str]) -> list[str]:
    """Markdown: accuracy per task and costs per method."""
    lines = [
        "| method | " + " | ".join(tasks) + " | mean | seeds |",
        "|---" * (len(tasks) + 3) + "|",
    ]
    for m, a in agg.items():
        cells = [_ms(a["per_task"].get(t, [])) for t in tasks]
        lines.append(
            f"| {m} | " + " | ".join(cells) + f" | **{_ms(a['acc'])}** | {len(a['seeds'])} |"
        )
    lines += [
        "",
        "| method | params to serve the 5 | forgetting | examples (chosen runs) |"
        " examples incl. LR search | train s (chosen runs) |",
        "|---|---|---|---|---|---|",
    ]
    for m, a in agg.items():
        if not a["seeds"]:
            continue
        lines.append(
            f"| {m} | {statistics.mean(a['params']):,.0f} | {_ms(a['forgetting'], '.4f')} | "
            f"{statistics.mean(a['examples']):,.0f} | {statistics.mean(a['search_examples']):,.0f}"
            f" | {_ms(a['seconds'], '.0f')} |"
        )
    lines += ["", "Training examples per task (mean over seeds, chosen runs):", ""]
    lines += ["| method | " + " | ".join(tasks) + " |", "|---" * (len(tasks) + 1) + "|"]
    for m, a in agg.items():
        cells = [f"{a['per_task_examples'].get(t, 0):,.0f}" for t in tasks]
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


def halving_table(rows: Sequence[Row], tasks: Sequence[str]) -> list[str]:
    """Successive halving against plain µ2Net's even split, same budget, same seeds: the best
    validation accuracy each search found and the candidate steps it took (the final phase,
    paid for by the steps halving saved, not counted), then the retained path after it."""
    even = {(r["seed"], r["task"]): r for r in rows if r["method"] == "mutask-even"}
    halv = {(r["seed"], r["task"]): r for r in rows if r["method"] == "mutask"}
    keys = sorted(set(even) & set(halv))
    if not keys:
        return ["Successive halving vs the even split: not run (mutask-even missing)."]
    seeds = sorted({s for s, _ in keys})
    lines = [
        f"Successive halving vs the even split (same budget in examples; seeds {seeds}, "
        "validation accuracy, mean over seeds):",
        "",
        "| task | even: best val | even: candidate steps | halving: best val of the search | "
        "halving: candidate steps | fewer steps | halving + final phase: val |",
        "|---|---|---|---|---|---|---|",
    ]
    totals = {"e": 0, "h": 0}
    vals: dict[str, list[float]] = {"e": [], "h": [], "f": []}
    for t in tasks:
        ks = [k for k in keys if k[1] == t]
        if not ks:
            continue
        e = statistics.mean(float(even[k]["val"]) for k in ks)
        h = statistics.mean(float(halv[k]["search_val"]) for k in ks)
        f = statistics.mean(float(halv[k]["val"]) for k in ks)
        se = statistics.mean(int(even[k]["search_steps"]) for k in ks)
        sh = statistics.mean(int(halv[k]["search_steps"]) for k in ks)
        totals["e"] += int(se)
        totals["h"] += int(sh)
        vals["e"].append(e)
        vals["h"].append(h)
        vals["f"].append(f)
        lines.append(
            f"| {t} | {e:.4f} | {se:,.0f} | {h:.4f} | {sh:,.0f} | {se / sh:.2f}x | {f:.4f} |"
        )
    lines.append(
        f"| mean | {statistics.mean(vals['e']):.4f} | {totals['e']:,} | "
        f"{statistics.mean(vals['h']):.4f} | {totals['h']:,} | "
        f"{totals['e'] / max(1, totals['h']):.2f}x | {statistics.mean(vals['f']):.4f} |"
    )
    return lines


def headline(agg: Mapping[str, Mapping[str, Any]], method: str = "mutask") -> str:
    """The last line: mutask's mean accuracy over fine-tune's, with params and examples."""
    m, f = agg[method], agg["finetune"]
    acc = statistics.mean(m["acc"]) / statistics.mean(f["acc"])
    params = statistics.mean(m["params"]) / statistics.mean(f["params"])
    examples = statistics.mean(m["examples"]) / statistics.mean(f["examples"])
    met = acc >= 1.0 and params <= 0.4 and examples <= 2.0 and max(m["forgetting"]) == 0.0
    return (
        f"headline: {method} / fine-tune mean test accuracy {acc:.3f} "
        f"({statistics.mean(m['acc']):.4f} vs {statistics.mean(f['acc']):.4f}), "
        f"params to serve {params:.3f}x, training examples {examples:.3f}x "
        f"(issue 9 target acc >= 1, params <= 0.40, examples <= 2: {'MET' if met else 'NOT met'})"
    )


def plots(agg: Mapping[str, Mapping[str, Any]], tasks: Sequence[str], out: Path) -> list[Path]:
    """Per-task accuracy bars, and mean accuracy against params and against examples."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    methods = [m for m in agg if agg[m]["seeds"]]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / max(1, len(methods))
    for i, m in enumerate(methods):
        vals = [agg[m]["per_task"].get(t, [0.0]) for t in tasks]
        ax.bar(
            [j + i * width for j in range(len(tasks))],
            [statistics.mean(v) for v in vals],
            width,
            yerr=[statistics.stdev(v) if len(v) > 1 else 0.0 for v in vals],
            capsize=2,
            label=m,
        )
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(tasks))], tasks, fontsize=8)
    ax.tick_params(axis="x", pad=1)
    ax.set_ylabel("test accuracy (after all tasks)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=len(methods), loc="upper center", bbox_to_anchor=(0.5, -0.08))
    ax.set_title("Per-task test accuracy (mean ± std over seeds)")
    fig.tight_layout()
    written.append(out / "quality_per_task.png")
    fig.savefig(written[-1], dpi=110)
    plt.close(fig)
    for key, label, name in (
        ("params", "parameters to serve the 5 tasks", "quality_accuracy_vs_params.png"),
        ("examples", "training examples over the 5 tasks", "quality_accuracy_vs_examples.png"),
    ):
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for m in methods:
            a = agg[m]
            ax.errorbar(
                statistics.mean(a[key]),
                statistics.mean(a["acc"]),
                yerr=statistics.stdev(a["acc"]) if len(a["acc"]) > 1 else 0.0,
                fmt="o",
                capsize=4,
                label=m,
            )
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("mean test accuracy of the 5 tasks")
        ax.legend(fontsize=7)
        fig.tight_layout()
        written.append(out / name)
        fig.savefig(written[-1], dpi=110)
        plt.close(fig)
    return written


def plot_root(roots: Mapping[str, Mapping[str, Any]], out: Path) -> Path:
    """Validation accuracy of the root(s) per epoch: the convergence evidence."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for label, info in roots.items():
        ex, val = zip(*info["curve"], strict=True)
        ax.plot([e / info["train_examples"] for e in ex], val, marker=".", label=label)
    ax.set_xlabel("epochs over the root's training split")
    ax.set_ylabel("validation accuracy")
    ax.set_ylim(0.5, 1.0)
    ax.legend(fontsize=8)
    ax.set_title("Root (mu-tiny on Fashion-MNIST), trained to convergence")
    fig.tight_layout()
    path = out / "quality_root.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
