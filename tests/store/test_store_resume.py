"""kill -9 of a trainer at random points in training and in publish, then resume.

Four interrupted runs and one uninterrupted reference run go concurrently, each in its own
store (both backends), then the four are restarted. Every resumed run must end with exactly
the reference's published path and component weights, leave a consistent store (no resume
state, lease released, every referenced blob present) and pass `mutask verify`.
"""

from __future__ import annotations

import json
import random
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from store_testutil import Run, final_state, introduce_argv, start

from mutask.trainer.cli import main
from mutask.trainer.store.gc import collect_garbage
from mutask.trainer.store.objects import NotFound
from mutask.trainer.store.system_store import SystemStore

pytestmark = pytest.mark.slow
TASK, TRANSFORM = "rot90", "rot90"
ARGS = {"generations": 3, "steps": 20}


@dataclass
class Scenario:
    name: str
    backend: str
    crash_at: str | None = None  # a crash point inside publish, else kill -9 from outside
    uri: str = ""
    run: Run | None = None
    killed_at: str = ""


def _exists(store: SystemStore, key: str) -> bool:
    return store.objects.stat(key) is not None


def _kill_when(sc: Scenario, store: SystemStore, trigger: Callable[[], bool], delay: float) -> None:
    assert sc.run is not None
    deadline = time.monotonic() + 120
    while not trigger():
        assert sc.run.proc.poll() is None, (
            f"{sc.name}: exited before the kill point\n{sc.run.stderr[-2000:]}"
        )
        assert time.monotonic() < deadline, f"{sc.name}: kill point never reached"
        time.sleep(0.02)
    time.sleep(delay)
    assert sc.run.proc.poll() is None, f"{sc.name}: finished before the kill (delay {delay})"
    sc.run.proc.send_signal(signal.SIGKILL)
    sc.killed_at = f"{delay:.2f}s after the trigger"


def test_kill_9_anywhere_then_resume_equals_the_uninterrupted_run(
    new_gs_uri: Callable[[], str],
    root_store: Path,
    seeded: Callable[[Path, str], str],
    tmp_path: Path,
) -> None:
    rnd = random.Random()
    seed = rnd.randrange(1 << 30)
    rnd.seed(seed)
    print(f"random kill points: seed {seed}")
    scenarios = [
        Scenario("reference", "local"),
        Scenario("after-generation-checkpoint", "gcs"),
        Scenario("random-in-training", "local"),
        Scenario("publish-before-manifest", "gcs", crash_at="publish:before-manifest"),
        Scenario("publish-after-manifest", "local", crash_at="publish:after-manifest"),
    ]
    for sc in scenarios:
        if sc.backend == "gcs":
            sc.uri = new_gs_uri()
        else:
            sc.uri = str(tmp_path / sc.name / "store")
        seeded(root_store, sc.uri)
        extra = {"MUTASK_CRASH_AT": sc.crash_at} if sc.crash_at else {}
        sc.run = start(
            introduce_argv(sc.uri, TASK, transform=TRANSFORM, **ARGS),
            tmp_path / sc.name,
            "first",
            **extra,
        )
    by = {sc.name: sc for sc in scenarios}
    stores = {sc.name: SystemStore.open(sc.uri) for sc in scenarios}
    resume_key, lease_key = f"tasks/{TASK}/resume.json", f"tasks/{TASK}/lease.json"
    _kill_when(
        by["after-generation-checkpoint"],
        stores["after-generation-checkpoint"],
        lambda: _exists(stores["after-generation-checkpoint"], resume_key),
        0.0,
    )
    # a random moment inside the later generations' training: after the first generation's
    # checkpoint, well before the remaining 2 generations (8 candidates x 20 steps) can end
    _kill_when(
        by["random-in-training"],
        stores["random-in-training"],
        lambda: _exists(stores["random-in-training"], resume_key),
        rnd.uniform(0.05, 0.5),
    )
    for sc in scenarios:
        assert sc.run is not None
        code = sc.run.wait()
        expected = 0 if sc.name == "reference" else -signal.SIGKILL
        assert code == expected, f"{sc.name}: exit {code}\n{sc.run.stderr[-3000:]}"
    reference = final_state(stores["reference"], TASK)

    for sc in scenarios[1:]:  # restart the killed ones, concurrently
        sc.run = start(
            introduce_argv(sc.uri, TASK, transform=TRANSFORM, **ARGS), tmp_path / sc.name, "resumed"
        )
    for sc in scenarios[1:]:
        assert sc.run is not None
        assert sc.run.wait() == 0, f"{sc.name}: {sc.run.stderr[-3000:]}"
        store = stores[sc.name]
        log = sc.run.stdout + sc.run.stderr
        assert final_state(store, TASK) == reference, f"{sc.name} ({sc.killed_at})\n{log}"
        assert store.load_resume(TASK) is None, sc.name
        lease = json.loads(store.objects.read(lease_key)[0])
        assert lease["released"], sc.name
        refs = collect_garbage(store, grace_seconds=0, dry_run=True)
        assert refs.kept == len(
            {e["blob"] for m in store.manifests().values() for e in m["components"].values()}
        ), sc.name
        assert main(["verify", "--store", sc.uri, "--device", "cpu"]) == 0, sc.name
    assert "resumed at generation 1" in _log(by["after-generation-checkpoint"])
    assert f"resumed at generation {ARGS['generations']}" in _log(by["publish-before-manifest"])
    assert "already published" in _log(by["publish-after-manifest"])


def _log(sc: Scenario) -> str:
    assert sc.run is not None
    return sc.run.stdout + sc.run.stderr


def test_missing_resume_state_is_not_an_error(store_uri: str) -> None:
    store = SystemStore.open(store_uri)
    assert store.load_resume("nothing") is None
    store.clear_resume("nothing")
    with pytest.raises(NotFound):
        store.objects.read("tasks/nothing/resume.json")
