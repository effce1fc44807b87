"""Garbage collection of blobs: delete only what no manifest, resume state or candidate
record of workers sharing a generation references.

A blob is deleted only when no published manifest and no in-flight resume state references
it AND it is older than a grace period, so a publish in flight (blobs written, manifest not
yet) is never collected. Order matters: blobs are listed first, references read second, so
a blob a publish writes or refreshes after the listing is either referenced or young by the
time GC looks at it. Each victim is re-checked just before deletion and deleted with a
generation precondition, so a blob a publish refreshed (touched) in between survives.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from urllib.parse import unquote

from mutask.trainer.store.objects import NotFound, PreconditionFailed
from mutask.trainer.store.system_store import BLOBS, EXCHANGE, TASKS, SystemStore

BLOB_SUFFIX = ".safetensors"


@dataclass
class GcReport:
    """What a GC pass deleted (or would), kept, and skipped as too young."""

    deleted: list[str] = field(default_factory=list)
    too_young: list[str] = field(default_factory=list)
    kept: int = 0
    bytes_freed: int = 0


def referenced_blobs(store: SystemStore) -> set[str]:
    """Digests referenced by any published manifest, any in-flight resume state or any
    candidate record in a task's ``exchange/``."""
    refs: set[str] = set()
    for manifest in store.manifests().values():
        refs.update(str(c["blob"]) for c in manifest["components"].values())
    for info in store.objects.list(TASKS):
        parts = info.key.split("/")
        if len(parts) == 3 and parts[2] == "resume.json":
            state = store.load_resume(unquote(parts[1]))
            if state:
                refs.update(str(b) for b in state.get("blobs", {}).values())
        elif len(parts) > 3 and parts[2] == EXCHANGE.rstrip("/") and parts[-1].startswith("c"):
            with contextlib.suppress(NotFound, ValueError):
                record = json.loads(store.objects.read(info.key)[0])
                refs.update(str(b) for b in record.get("components", {}).values())
    return refs


def collect_garbage(
    store: SystemStore,
    *,
    grace_seconds: float = 3600.0,
    dry_run: bool = False,
    now: float | None = None,
) -> GcReport:
    """Delete (or with ``dry_run`` only report) unreferenced blobs older than the grace."""
    clock = time.time if now is None else (lambda: now)
    blobs = store.objects.list(BLOBS)  # first: see the comment at the top of the module
    refs = referenced_blobs(store)
    report = GcReport()
    for info in blobs:
        digest = info.key[len(BLOBS) :].removesuffix(BLOB_SUFFIX)
        t = clock()
        if digest in refs:
            report.kept += 1
            continue
        if t - info.updated < grace_seconds:
            report.too_young.append(digest)
            continue
        if not dry_run:
            fresh = store.objects.stat(info.key)  # refreshed by a publish since the listing?
            if fresh is None:
                continue
            if fresh.generation != info.generation or t - fresh.updated < grace_seconds:
                report.too_young.append(digest)
                continue
            try:
                store.objects.delete(info.key, if_generation=info.generation)
            except NotFound:
                continue
            except PreconditionFailed:
                report.too_young.append(digest)
                continue
        report.deleted.append(digest)
        report.bytes_freed += info.size
    return report
