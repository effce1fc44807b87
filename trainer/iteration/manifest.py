"""Building a task's manifest: its path, component entries, scores, lineage and accounting."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from mutask.trainer.config import DatasetConfig, ModelConfig
from mutask.trainer.evolution import ROOT_TASK, ScoreBreakdown, System
from mutask.trainer.evolution.system import Path

MANIFEST_FORMAT = 1


def lineage(path: Path, known: Mapping[str, Path], previous: Mapping[str, Any] | None) -> list[str]:
    """Ancestor path ids, nearest first, as far as this run and the old manifest know."""
    out: list[str] = []
    cur = path.parent
    seen: set[str] = set()
    while cur and cur not in seen:
        seen.add(cur)
        out.append(cur)
        parent = known.get(cur)
        cur = parent.parent if parent else None
    if previous and previous["path"]["id"] in out:
        idx = out.index(previous["path"]["id"])
        out = out[: idx + 1] + [p for p in previous.get("lineage", []) if p not in out]
    return out


def accounting(system: System, task: str) -> dict[str, int]:
    """Parameters of the task's path: added (its own), shared (with others), total."""
    path = system.best[task]
    owners = system.owner_map()
    added = shared = 0
    for cid in path.component_ids:
        n = system.components[cid].num_params
        if owners.get(cid, frozenset()) - {task}:
            shared += n
        else:
            added += n
    return {"added": added, "shared": shared, "total": added + shared}


def build_manifest(
    *,
    system: System,
    task: str,
    iteration: int,
    entries: Mapping[str, Mapping[str, Any]],
    created: list[str],
    breakdown: ScoreBreakdown | None,
    test_accuracy: float | None,
    probe_sha256: str | None,
    num_classes: int,
    dataset: DatasetConfig | None,
    model: ModelConfig,
    seed: int,
    device_kind: str,
    device_model: str,
    precision: str,
    known: Mapping[str, Path],
    previous: Mapping[str, Any] | None,
    seconds: float,
) -> dict[str, Any]:
    """The manifest of ``task``'s retained path in ``system``; ``test_accuracy`` and
    ``probe_sha256`` were measured at ``precision`` on a ``device_kind`` device of model
    ``device_model`` (what verification compares against, see :mod:`.verify`)."""
    path = system.best[task]
    comps: dict[str, Any] = {}
    for cid in path.component_ids:
        entry = dict(entries[cid])
        entry["created_by"] = task if cid in created else entry.get("created_by", ROOT_TASK)
        comps[cid] = entry
    history = list(previous.get("history", [])) if previous else []
    history.append(
        {
            "iteration": iteration,
            "score": path.score,
            "quality": path.quality,
            "test_accuracy": test_accuracy,
            "path": path.id,
            "seconds": round(seconds, 3),
        }
    )
    return {
        "format": MANIFEST_FORMAT,
        "task": task,
        "iteration": iteration,
        "published_at": time.time(),
        "shape": asdict(system.shape),
        "model": asdict(model),
        "dataset": asdict(dataset) if dataset is not None else None,
        "num_classes": num_classes,
        "seed": seed,
        "device_kind": device_kind,
        "device_model": device_model,
        "precision": precision,
        "path": path.to_dict(),
        "components": comps,
        "created": sorted(created),
        "score": asdict(breakdown) if breakdown else None,
        "test_accuracy": test_accuracy,
        "probe_sha256": probe_sha256,
        "lineage": lineage(path, known, previous),
        "params": accounting(system, task),
        "history": history,
    }
