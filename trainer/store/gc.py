"""Garbage collection of blobs: delete only what no manifest or resume state references.

A blob is deleted only when no published manifest and no in-flight resume state references
it AND it is older than a grace period, so a publish in flight (blobs written, manifest not
yet) is never collected.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from mutask.trainer.store.objects import NotFound
from mutask.trainer.store.system_store import BLOBS, TASKS, SystemStore


@dataclass
class GcReport:
    """What a GC pass deleted (or would), kept, and skipped as too young."""

    deleted: list[str] = field(default_factory=list)
    too_young: list[str] = field(default_factory=list)
    kept: int = 0
    bytes_freed: int = 0


def referenced_blobs(store: SystemStore) -> set[str]:
    refs: set[str] = set()
    for manifest in store.manifests().values():
        refs.update(str(c["blob"]) for c in manifest["components"].values())
    for info in store.objects.list(TASKS):
        if info.key.endswith("/resume.json"):
            task = info.key.split("/")[1]
            from urllib.parse import unquote

            state = store.load_resume(unquote(task))
            if state:
                refs.update(str(b) for b in state.get("blobs", {}).values())
    return refs


def collect_garbage(
    store: SystemStore, *, grace_seconds: float = 3600.0, dry_run: bool = False,
    now: float | None = None,
) -> GcReport:
    now = time.time() if now is None else now
    blobs = store.objects.list(BLOBS)
    refs = referenced_blobs(store)
    report = GcReport()
    for info in blobs:
        digest = info.key[len(BLOBS):].removesuffix(".safetensors")
        if digest in refs:
            report.kept += 1
        elif now - info.updated < grace_seconds:
            report.too_young.append(digest)
        else:
            report.deleted.append(digest)
            report.bytes_freed += info.size
            if not dry_run:
                try:
                    store.objects.delete(info.key)
                except NotFound:
                    pass
    return report
