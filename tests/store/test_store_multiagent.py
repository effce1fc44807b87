"""Several `mutask introduce` processes against one bucket on a real fake-gcs-server.

Different tasks run concurrently and both land; two writers of one task never both publish
(the second is fenced, exit code 3); a frozen holder whose lease was taken over stops with
exit code 3 once it wakes up, and its stale result never reaches the store.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from store_testutil import final_state, introduce_argv, start, wait_for

from mutask.contract import ExitCode
from mutask.trainer.cli import main
from mutask.trainer.store.gc import collect_garbage
from mutask.trainer.store.objects import NotFound
from mutask.trainer.store.system_store import BLOBS, SystemStore, system_from_manifests

pytestmark = pytest.mark.slow


def _lease(store: SystemStore, task: str) -> dict[str, object] | None:
    try:
        data, _ = store.objects.read(f"tasks/{task}/lease.json")
    except NotFound:
        return None
    doc: dict[str, object] = json.loads(data)
    return doc


def test_two_agents_introduce_two_tasks_into_one_bucket(
    gs_uri: str,
    root_store: Path,
    seeded: Callable[[Path, str], str],
    tmp_path: Path,
) -> None:
    seeded(root_store, gs_uri)
    runs = {
        task: start(introduce_argv(gs_uri, task, transform=tf), tmp_path, task)
        for task, tf in (("rot90", "rot90"), ("flip", "flip_lr"))
    }
    for task, run in runs.items():
        assert run.wait() == 0, f"{task}: {run.stderr[-2000:]}"
    store = SystemStore.open(gs_uri)
    manifests = store.manifests()
    assert sorted(manifests) == ["__root__", "flip", "rot90"]
    # nothing lost: every referenced blob is there with its content hash, GC keeps them all
    for m in manifests.values():
        for entry in m["components"].values():
            store.get_blob(entry["blob"])
    report = collect_garbage(store, grace_seconds=0, dry_run=True)
    assert report.kept == len(
        {e["blob"] for m in manifests.values() for e in m["components"].values()}
    )
    # each task, at its next iteration, sees the other's path as a frozen seed
    system = system_from_manifests(manifests)
    for me, other in (("rot90", "flip"), ("flip", "rot90")):
        seeds = {p.id for p in system.seeds_for(me)}
        assert system.best[other].id in seeds
        owners = system.owner_map(exclude=me)
        theirs = set(manifests[other]["created"])
        assert theirs and all(owners.get(cid) for cid in theirs)  # not trainable for me
    assert main(["verify", "--store", gs_uri, "--device", "cpu"]) == 0
    assert not store.objects.list(BLOBS + "x")  # listing under a prefix stays scoped


def test_two_writers_of_one_task_only_one_publishes(
    gs_uri: str,
    root_store: Path,
    seeded: Callable[[Path, str], str],
    tmp_path: Path,
) -> None:
    seeded(root_store, gs_uri)
    argv = introduce_argv(gs_uri, "rot90", transform="rot90", generations=2, steps=10)
    runs = [start(argv, tmp_path, f"writer{i}") for i in range(2)]
    codes = sorted(r.wait() for r in runs)
    assert codes == [0, ExitCode.FENCED], [r.stderr[-2000:] for r in runs]
    loser = next(r for r in runs if r.proc.returncode == ExitCode.FENCED)
    assert "fenced" in loser.stderr and "holds the lease" in loser.stderr
    found = SystemStore.open(gs_uri).read_manifest("rot90")
    assert found is not None and found[0]["iteration"] == 0  # published once, not revisited


def test_frozen_holder_loses_its_lease_and_stops(
    gs_uri: str,
    root_store: Path,
    seeded: Callable[[Path, str], str],
    tmp_path: Path,
) -> None:
    """A pod stalls (SIGSTOP) past its lease; a replacement takes over; the old one wakes."""
    seeded(root_store, gs_uri)
    store = SystemStore.open(gs_uri)
    argv = introduce_argv(gs_uri, "rot90", transform="rot90", generations=2, steps=10)
    old = start(argv, tmp_path, "old")
    try:
        wait_for(lambda: _lease(store, "rot90") is not None, old)
        old.proc.send_signal(signal.SIGSTOP)
        new = start(argv, tmp_path, "new")
        assert new.wait() == 0, new.stderr[-2000:]
        assert "taking over" in new.stdout + new.stderr
        after_new = store.read_manifest("rot90")
        assert after_new is not None
    finally:
        old.proc.send_signal(signal.SIGCONT)
    assert old.wait() == ExitCode.FENCED, old.stderr[-2000:]
    assert "lost the lease" in old.stderr
    assert store.read_manifest("rot90") == after_new  # the stale run wrote nothing
    assert store.load_resume("rot90") is None
    assert final_state(store, "rot90")["iteration"] == 0
