"""The demo's report folder: a markdown summary and PNG plots (growth, sharing graph)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.lines import Line2D

from mutask.trainer.demo.summary import system_table, task_rows
from mutask.trainer.evolution import ROOT_TASK, System, architecture
from mutask.trainer.iteration.verify import Verification


def plot_growth(timeline: Sequence[Mapping[str, Any]], root_params: int, out: Path) -> None:
    """System parameters after each step, against one full model copy per task."""
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = ["root", *[str(t["step"]) for t in timeline]]
    totals = [root_params, *[int(t["total_params"]) for t in timeline]]
    naive = [root_params * (1 + int(t["tasks"])) for t in [{"tasks": 0}, *timeline]]
    ax.plot(steps, totals, marker="o", label="mutask system")
    ax.plot(steps, naive, marker="x", linestyle="--", label="one fine-tuned copy per task")
    ax.set_ylabel("parameters")
    ax.set_title("Parameter growth")
    ax.legend()
    plt.setp(ax.get_xticklabels(), rotation=20, ha="right")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def plot_sharing(system: System, out: Path) -> None:
    """Rows = tasks, columns = component slots; colour = creating task; lines = shared."""
    tasks = [ROOT_TASK, *system.tasks]
    present = {name for t in tasks for name in system.best[t].names}
    depth = max(
        len([n for n in system.best[t].names if n.startswith("encoderblock_")]) for t in tasks
    )
    adapters = {i for t in tasks for i in system.best[t].adapters}
    slots = [n for n in architecture(depth, adapters) if n in present]
    creator: dict[str, str] = {}
    for t in tasks:
        for cid in system.best[t].component_ids:
            creator.setdefault(cid, cid.split("~")[0])
    colours = {t: plt.get_cmap("tab10")(i % 10) for i, t in enumerate(tasks)}
    fig, ax = plt.subplots(figsize=(max(7, len(slots) * 0.7), 1.2 + 0.8 * len(tasks)))
    placed: dict[str, list[tuple[int, int]]] = {}
    for row, t in enumerate(tasks):
        for name, cid in system.best[t].components:
            col = slots.index(name)
            placed.setdefault(cid, []).append((col, row))
            ax.scatter(
                col,
                row,
                s=260,
                color=colours.get(creator[cid], "grey"),
                edgecolors="black",
                zorder=3,
            )
    # one bracket per shared component, offset sideways so that two components shared in the
    # same column never look like one line passing through an unrelated task's dot
    lanes: dict[int, int] = {}
    for points in placed.values():
        if len(points) > 1:
            col = points[0][0]
            lane = lanes[col] = lanes.get(col, -1) + 1
            dx = 0.28 + 0.12 * lane
            ys = [row for _, row in points]
            ax.plot([col + dx] * 2, [min(ys), max(ys)], color="black", linewidth=1.5)
            for row in ys:
                ax.plot([col, col + dx], [row, row], color="black", linewidth=1.0, zorder=2)
    ax.set_xticks(
        range(len(slots)),
        [s.replace("encoderblock_", "blk").replace("residual_adapter_", "adp") for s in slots],
        rotation=45,
        ha="right",
    )
    ax.set_yticks(range(len(tasks)), tasks)
    ax.invert_yaxis()
    handles = [
        Line2D([], [], marker="o", linestyle="", color=c, label=f"created by {t}")
        for t, c in colours.items()
    ]
    ax.legend(handles=handles, bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=8)
    ax.set_title("Component sharing (a bracket joins the tasks that share one component)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def write_report(
    folder: Path,
    system: System,
    manifests: Mapping[str, Mapping[str, Any]],
    timeline: Sequence[Mapping[str, Any]],
    verifications: Sequence[Verification],
    seconds: float,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    root_params = system.root_params()
    plot_growth(timeline, root_params, folder / "parameter_growth.png")
    plot_sharing(system, folder / "sharing_graph.png")
    lines = [
        "# mutask demo report",
        "",
        f"{len(system.tasks)} task(s) grown on a root of {root_params:,} parameters in "
        f"{seconds:.0f} s.",
        "",
        "```",
        system_table(system, manifests),
        "```",
        "",
        "## No-forgetting verification",
        "",
        "| task | frozen tensors hash-identical | test accuracy recorded | re-evaluated | "
        "probe logits bit-identical |",
        "|---|---|---|---|---|",
    ]
    for v in verifications:
        lines.append(
            f"| {v.task} | {'yes' if v.hashes_ok else 'NO'} | "
            f"{v.test_accuracy_recorded} | {v.test_accuracy_now} | {v.probe_ok} |"
        )
    lines += ["", "## Paths", ""]
    for row in task_rows(system, manifests):
        lines.append(
            f"- **{row['task']}** `{row['path']}`: {row['layers']} blocks, "
            f"{row['adapters']} adapter(s), shares with {row['shares_with'] or 'none'}"
        )
    lines += [
        "",
        "![parameter growth](parameter_growth.png)",
        "",
        "![component sharing](sharing_graph.png)",
        "",
    ]
    out = folder / "report.md"
    out.write_text("\n".join(lines))
    return out
