"""GC keeps every referenced blob, honours the grace period, and survives the reuse race."""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mutask.trainer.store.gc import collect_garbage
from mutask.trainer.store.system_store import BLOBS, SystemStore

HOUR = 3600.0


def _manifest(store: SystemStore, *blobs: str) -> dict[str, Any]:
    return {"components": {f"c{i}": {"blob": b} for i, b in enumerate(blobs)}}


def _publish(store: SystemStore, task: str, *blobs: str) -> None:
    found = store.read_manifest(task)
    store.publish(task, _manifest(store, *blobs), expected=found[1] if found else 0)


def test_gc_keeps_referenced_and_young_blobs(store_uri: str) -> None:
    store = SystemStore.open(store_uri)
    a, b, c, d = (store.put_blob(x) for x in (b"a", b"b", b"c", b"d"))
    _publish(store, "one", a, b)
    _publish(store, "two", b)
    store.save_resume("three", {"blobs": {"p": c}})
    later = time.time() + 2 * HOUR
    dry = collect_garbage(store, grace_seconds=HOUR, dry_run=True, now=later)
    assert dry.deleted == [d] and dry.kept == 3
    assert store.objects.stat(f"{BLOBS}{d}.safetensors") is not None  # dry run: untouched
    young = collect_garbage(store, grace_seconds=HOUR)  # d is unreferenced but young
    assert young.deleted == [] and young.too_young == [d]
    report = collect_garbage(store, grace_seconds=HOUR, now=later)
    assert report.deleted == [d] and report.bytes_freed == 1
    for digest in (a, b, c):
        assert store.get_blob(digest)
    store.clear_resume("three")
    assert collect_garbage(store, grace_seconds=HOUR, now=later).deleted == [c]


def _stale_listing(store: SystemStore, age: float) -> None:
    """Make GC's listing of blobs a snapshot taken now, with every blob ``age`` s older."""
    listing = [replace(i, updated=i.updated - age) for i in store.objects.list(BLOBS)]
    real = store.objects.list
    store.objects.list = lambda prefix="": (  # type: ignore[method-assign]
        listing if prefix == BLOBS else real(prefix)
    )


def test_reused_blob_is_refreshed_so_a_concurrent_gc_spares_it(store_uri: str) -> None:
    """Publish dedupes an old, unreferenced blob; GC must not delete it under the publish."""
    data = b"an old component nobody references any more"
    store = SystemStore.open(store_uri)
    old = store.put_blob(data)
    key = f"{BLOBS}{old}.safetensors"
    first = store.objects.stat(key)
    assert first is not None
    # GC lists blobs: this one is unreferenced and 2 h old ...
    _stale_listing(store, 2 * HOUR)
    # ... then a publish decides to reuse it (dedupe) and refreshes it ...
    assert store.put_blob(data) == old
    refreshed = store.objects.stat(key)
    assert refreshed is not None and refreshed.generation != first.generation
    assert refreshed.updated >= first.updated
    # ... and GC, deciding from its stale listing, re-checks the victim and spares it
    report = collect_garbage(store, grace_seconds=HOUR)
    assert report.deleted == [] and report.too_young == [old]
    assert store.get_blob(old) == data
    # the publish lands; from now on the blob is referenced
    _publish(store, "t", old)
    del store.objects.list  # type: ignore[method-assign]
    assert collect_garbage(store, grace_seconds=HOUR, now=time.time() + 10 * HOUR).kept == 1


def test_without_the_refresh_the_race_loses_the_blob(store_uri: str) -> None:
    """The counterfactual: a dedupe that only checks existence lets GC delete the blob."""
    if store_uri.startswith("gs://"):
        pytest.skip("needs a really old blob: GCS cannot backdate `updated`")
    store = SystemStore.open(store_uri)
    digest = store.put_blob(b"reused without refresh")
    path = Path(store_uri) / f"{BLOBS}{digest}.safetensors"
    old = time.time() - 2 * HOUR
    os.utime(path, (old, old))
    _stale_listing(store, 0)
    assert store.objects.stat(f"{BLOBS}{digest}.safetensors") is not None  # "present: skip"
    assert collect_garbage(store, grace_seconds=HOUR).deleted == [digest]
    assert store.objects.stat(f"{BLOBS}{digest}.safetensors") is None


def test_publish_refreshes_old_referenced_blobs(store_uri: str) -> None:
    store = SystemStore.open(store_uri)
    store.refresh_after = 0.0  # every referenced blob counts as old
    digest = store.put_blob(b"shared")
    before = store.objects.stat(f"{BLOBS}{digest}.safetensors")
    _publish(store, "t", digest)
    after = store.objects.stat(f"{BLOBS}{digest}.safetensors")
    assert before is not None and after is not None and after.generation != before.generation


def test_gc_command_dry_run(store_uri: str, capsys: Any, tmp_path: Path) -> None:
    from mutask.trainer.cli import main

    store = SystemStore.open(store_uri)
    store.put_blob(b"orphan")
    assert main(["gc", "--store", store_uri, "--dry-run", "--grace-seconds", "0"]) == 0
    assert "would delete 1 blob(s)" in capsys.readouterr().out
    assert len(store.objects.list(BLOBS)) == 1
    assert main(["gc", "--store", store_uri, "--grace-seconds", "0"]) == 0
    assert "deleted 1 blob(s)" in capsys.readouterr().out
    assert store.objects.list(BLOBS) == []
