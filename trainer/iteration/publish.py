"""Publishing a task's retained path: the one way a task (the root included) lands in a store.

Saves the components the task created as blobs, measures the path's outputs at the
device's precision (:func:`~mutask.trainer.iteration.verify.measure`), builds the manifest,
checks the earlier tasks the path depends on (:func:`check_dependencies`) and replaces the
task's manifest by compare-and-swap (after confirming the writer's lease).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from mutask.trainer.config import DatasetConfig, IntroduceConfig
from mutask.trainer.data.sets import EvalSet
from mutask.trainer.errors import MutaskError
from mutask.trainer.evolution import Path, ScoreBreakdown, System
from mutask.trainer.iteration.manifest import build_manifest
from mutask.trainer.iteration.pool import ComponentPool
from mutask.trainer.iteration.verify import measure
from mutask.trainer.runtime.device import DeviceChoice, device_model
from mutask.trainer.store.lease import Lease
from mutask.trainer.store.objects import StoreDamaged
from mutask.trainer.store.system_store import SystemStore


@dataclass(frozen=True)
class Publication:
    """What one publish is about: ``task``'s path retained in the system at ``iteration``.

    ``created``: the components it added (saved as blobs now); ``test``: the test split to
    measure it on (None: nothing to measure, e.g. a pretrained root); ``previous``: the
    task's manifest it replaces; ``extra``: more manifest fields (e.g. the run fingerprint).
    """

    task: str
    iteration: int
    created: list[str]
    breakdown: ScoreBreakdown | None
    num_classes: int
    dataset: DatasetConfig | None
    test: EvalSet | None
    known: Mapping[str, Path]
    previous: Mapping[str, Any] | None
    started: float
    extra: Mapping[str, Any] = field(default_factory=dict)


def publish(
    store: SystemStore,
    system: System,
    pool: ComponentPool,
    cfg: IntroduceConfig,
    device: DeviceChoice,
    what: Publication,
    *,
    expected: int,
    lease: Lease | None = None,
) -> tuple[dict[str, Any], int]:
    """Write ``what``; its manifest and the manifest's new generation. Raises
    :class:`~mutask.trainer.store.objects.PreconditionFailed` if the task's manifest is no
    longer at generation ``expected`` (another writer published it)."""
    best = system.best[what.task]
    entries = {cid: pool.save(cid) for cid in what.created}
    for cid in best.component_ids:
        if cid not in entries:
            entries[cid] = pool.entries[cid]
    measured = measure(pool.model(best), what.test, device.autocast) if what.test else None
    manifest = build_manifest(
        system=system,
        task=what.task,
        iteration=what.iteration,
        entries=entries,
        created=what.created,
        breakdown=what.breakdown,
        test_accuracy=measured.test_accuracy if measured else None,
        probe_sha256=measured.probe_sha256 if measured else None,
        num_classes=what.num_classes,
        dataset=what.dataset,
        model=cfg.model,
        seed=cfg.seed,
        device_kind=device.kind,
        device_model=device_model(device),
        precision=device.precision,
        known=what.known,
        previous=what.previous,
        seconds=time.perf_counter() - what.started,
    )
    manifest.update(what.extra)
    check_dependencies(store, pool, best, what.task, set(what.created))
    if lease is not None:
        lease.confirm()  # fencing: CAS on the lease right before the manifest CAS
    generation = store.publish(what.task, manifest, expected=expected)
    return manifest, generation


class ForgettingError(MutaskError):
    """A component an earlier task owns changed in this run (exit 1; a bug, never expected)."""


def check_dependencies(
    store: SystemStore, pool: ComponentPool, path: Path, task: str, created: set[str]
) -> None:
    """Right before a publish: every component ``path`` shares with earlier tasks is intact,
    so a task never lands on top of damage. Its creator's manifest must be healthy (manifest
    readable and consistent, blobs present, see :mod:`~mutask.trainer.store.damage`):
    StoreDamaged naming it otherwise; and its live weights must still hash as recorded:
    ForgettingError otherwise."""
    found = store.scan()
    damage, changed = [], []
    for cid in path.component_ids:
        if cid in created:
            continue
        entry = pool.entries[cid]
        owner = str(entry.get("created_by"))
        if owner in found.damaged:
            damage.append(f"component {cid} of task {owner}, damaged: {found.problems(owner)}")
        elif owner not in found.manifests:
            damage.append(f"component {cid} of task {owner}, whose manifest is missing")
        elif pool.param_hash(cid) != entry["param_hash"]:
            changed.append(cid)
    if damage:
        raise StoreDamaged(
            f"{store.uri}: task {task}: publish refused, it depends on damaged tasks: "
            + "; ".join(damage)
        )
    if changed:
        raise ForgettingError(
            f"task {task}: publish refused, components of earlier tasks changed in this run: "
            f"{changed}"
        )
