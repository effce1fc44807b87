"""Tables of a system: per task its path, accuracy, parameters added vs shared, and the
training examples and time it took (the budget behind each accuracy)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mutask.trainer.evolution import ROOT_TASK, System
from mutask.trainer.iteration.manifest import accounting


def task_rows(system: System, manifests: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per task (root first) with the current, system-wide parameter accounting."""
    rows = []
    owners = system.owner_map()
    for task in [ROOT_TASK, *system.tasks]:
        if task not in manifests:  # a root whose manifest is missing (damaged store)
            continue
        m = manifests[task]
        path = system.best[task]
        acct = accounting(system, task)
        shared_with = sorted(
            {t for cid in path.component_ids for t in owners.get(cid, frozenset())} - {task}
        )
        rows.append(
            {
                "task": task,
                "iteration": m["iteration"],
                "path": path.id,
                "layers": sum(1 for n in path.names if n.startswith("encoderblock_")),
                "adapters": len(path.adapters),
                "val_accuracy": path.quality,
                "test_accuracy": m.get("test_accuracy"),
                "score": path.score,
                "params_added": acct["added"],
                "params_shared": acct["shared"],
                "params_total": acct["total"],
                "shares_with": shared_with,
                "seconds": (m.get("history") or [{}])[-1].get("seconds"),
                "examples": (m.get("training") or {}).get("examples"),
            }
        )
    return rows


def _fmt(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def system_table(system: System, manifests: Mapping[str, Mapping[str, Any]]) -> str:
    rows = task_rows(system, manifests)
    head = (
        f"{'task':24s} {'it':>2s} {'val acc':>8s} {'test acc':>8s} {'added':>9s} "
        f"{'shared':>9s} {'layers':>6s} {'adpt':>4s} {'examples':>9s} {'time s':>7s}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['task'][:24]:24s} {r['iteration']:>2d} {_fmt(r['val_accuracy'], '8.4f')} "
            f"{_fmt(r['test_accuracy'], '8.4f')} {r['params_added']:>9,d} "
            f"{r['params_shared']:>9,d} {r['layers']:>6d} {r['adapters']:>4d} "
            f"{_fmt(r['examples'], '9,d')} {_fmt(r['seconds'], '7.1f')}"
        )
    total = sum(c.num_params for c in system.components.values())
    lines.append("-" * len(head))
    lines.append(
        f"system: {len(system.tasks)} task(s) + root, {len(system.components)} "
        f"components, {total:,} parameters"
    )
    return "\n".join(lines)
