"""Garbage collection: unreferenced blobs, leftovers of interrupted writes, stale leases.

A blob is deleted only when no manifest (healthy or damaged, as long as it parses), no
in-flight resume state and no candidate record of workers sharing a generation (a task's
``exchange/``, see :mod:`mutask.trainer.iteration.exchange`) references it AND it is older
than a grace period, so a publish in flight (blobs written, manifest not yet) is never
collected. Order matters: blobs are listed first, references read second, so a blob a
publish writes or refreshes after the listing is either referenced or young by the time GC
looks at it. Each victim is re-checked just before deletion and deleted with a generation
precondition, so a blob a publish refreshed (touched) in between survives. While any
manifest is unreadable no blob is deleted at all: what it references is unknown.

GC also removes temp files left by killed writers (local backend; older than the grace, at
most ten minutes and at least one: no live write takes that long), idle lock files, and leases
nobody has renewed for the grace period (released ones, and those of killed runs), each
deleted with a generation precondition so a lease renewed meanwhile stays.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field

from mutask.trainer.store.layout import (
    BLOB_SUFFIX,
    BLOBS,
    EXCHANGE,
    LEASE,
    RESUME,
    TASKS,
    task_of,
)
from mutask.trainer.store.lease import DEFAULT_TTL
from mutask.trainer.store.objects import NotFound, PreconditionFailed, StoreDamaged
from mutask.trainer.store.system_store import DEBRIS_AGE, DEBRIS_FLOOR, SystemStore

DIGEST = re.compile(rb"[0-9a-f]{64}")


@dataclass
class GcReport:
    """What a GC pass deleted (or would), kept, and skipped, and what blocked it."""

    deleted: list[str] = field(default_factory=list)
    too_young: list[str] = field(default_factory=list)
    kept: int = 0
    bytes_freed: int = 0
    debris: list[str] = field(default_factory=list)
    leases: list[str] = field(default_factory=list)
    blocked_by: list[str] = field(default_factory=list)


def referenced_blobs(store: SystemStore) -> tuple[set[str], list[str]]:
    """Digests referenced by any parseable manifest, any resume state or any candidate
    record in a task's ``exchange/``, and the manifests that could not be read (while there
    are any, nothing may be deleted)."""
    found = store.scan(check_blobs=False)
    refs: set[str] = set()
    for manifest in found.documents.values():
        entries = manifest.get("components")
        if isinstance(entries, dict):
            refs.update(str(c.get("blob")) for c in entries.values() if isinstance(c, dict))
    blocked = [d.where(store.uri) for t in sorted(found.unreadable) for d in found.damaged[t]]
    for info in store.objects.list(TASKS):
        task = task_of(info.key, RESUME)
        if task is None:
            if _is_record(info.key):
                refs.update(_record_blobs(store, info.key))
            continue
        try:
            state = store.load_resume(task)
        except StoreDamaged:  # unreadable: keep whatever digests it still names
            refs.update(_digests_in(store, info.key))
            continue
        if state and isinstance(state.get("blobs"), dict):
            refs.update(str(b) for b in state["blobs"].values())
    return refs, blocked


def _is_record(key: str) -> bool:
    """``tasks/<task>/exchange/<run>/g<generation>/c<candidate>.json``."""
    parts = key.split("/")
    return len(parts) > 3 and parts[2] + "/" == EXCHANGE and parts[-1].startswith("c")


def _record_blobs(store: SystemStore, key: str) -> set[str]:
    """The blobs a candidate record names (an unreadable one: every digest in it)."""
    try:
        record = json.loads(store.objects.read(key)[0])
        return {str(b) for b in record["components"].values()}
    except NotFound:
        return set()
    except (ValueError, KeyError, TypeError, AttributeError):
        return _digests_in(store, key)


def _digests_in(store: SystemStore, key: str) -> set[str]:
    """Every blob digest that an unparseable object still names (kept to be safe)."""
    try:
        data, _ = store.objects.read(key)
    except NotFound:
        return set()
    return {m.decode() for m in DIGEST.findall(data)}


def collect_garbage(
    store: SystemStore,
    *,
    grace_seconds: float = 3600.0,
    dry_run: bool = False,
    now: float | None = None,
) -> GcReport:
    """Delete (or with ``dry_run`` only report) unreferenced blobs older than the grace,
    leftovers of interrupted writes and leases unrenewed for the grace."""
    clock = time.time if now is None else (lambda: now)
    blobs = store.objects.list(BLOBS)  # first: see the comment at the top of the module
    refs, blocked = referenced_blobs(store)
    report = GcReport(blocked_by=blocked)
    for info in blobs:
        digest = info.key[len(BLOBS) :].removesuffix(BLOB_SUFFIX)
        t = clock()
        if digest in refs:
            report.kept += 1
            continue
        if t - info.updated < grace_seconds or blocked:
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
    report.leases = _stale_leases(store, grace_seconds, clock(), dry_run)
    age = max(DEBRIS_FLOOR, min(grace_seconds, DEBRIS_AGE))
    if dry_run:
        report.debris = [d.key for d in store.objects.debris() if clock() - d.updated >= age]
    else:
        report.debris = store.sweep(("",), older_than=age, now=clock())
    return report


def _stale_leases(store: SystemStore, grace: float, now: float, dry_run: bool) -> list[str]:
    """Leases not written for the grace period (and never less than three of their TTLs, so
    a live holder, which renews every third of a TTL, is never among them): released ones
    and those of killed runs. Deleted only if still unchanged."""
    out = []
    for info in store.objects.list(TASKS):
        if task_of(info.key, LEASE) is None or now - info.updated < grace:
            continue
        try:
            doc = json.loads(store.objects.read(info.key)[0])
            ttl = float(doc.get("ttl", DEFAULT_TTL))
        except (NotFound, ValueError, TypeError, AttributeError):
            ttl = DEFAULT_TTL
        if now - info.updated < 3 * ttl:
            continue
        if not dry_run:
            try:
                store.objects.delete(info.key, if_generation=info.generation)
            except (NotFound, PreconditionFailed):
                continue
        out.append(info.key)
    return out
