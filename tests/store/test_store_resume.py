"""kill -9 of a trainer at every crash point of the write protocol and at random points in
training, then the retry.

One uninterrupted reference run and one run per crash point (tests/store/crash_launcher.py
kills it there with SIGKILL) plus two killed from outside (right after a checkpoint, at a
random moment in training) go concurrently, each in its own store (both backends); then the
killed ones are restarted. Every retry must end with exactly the reference's published path
and component weights (iteration 0: never trained twice), finish the no-forgetting check when
it was killed during it, leave a consistent store (no resume state, lease released, every
referenced blob present, no leftovers after GC) and pass `mutask verify`.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from crash_launcher import BLOB_TEMP, POINTS
from store_testutil import Run, final_state, introduce_argv, start

from mutask.trainer.cli import main
from mutask.trainer.store.gc import collect_garbage
from mutask.trainer.store.objects import NotFound
from mutask.trainer.store.system_store import DEBRIS_AGE, SystemStore

pytestmark = pytest.mark.slow
TASK, TRANSFORM = "rot90", "rot90"
ARGS = {"generations": 3, "steps": 20, "verify": True}
LAUNCHER = str(Path(__file__).with_name("crash_launcher.py"))


@dataclass
class Scenario:
    name: str
    backend: str
    crash_at: str | None = None  # a crash point of crash_launcher.py, else kill from outside
    uri: str = ""
    run: Run | None = None
    killed_at: str = ""


def _argv(uri: str, point: str | None) -> list[str]:
    argv = introduce_argv(uri, TASK, transform=TRANSFORM, **ARGS)
    if point is None:
        return argv
    cli_args = argv[argv.index("introduce") :]
    return [sys.executable, LAUNCHER, point, *cli_args]


def _exists(store: SystemStore, key: str) -> bool:
    return store.objects.stat(key) is not None


def _kill_when(sc: Scenario, store: SystemStore, trigger: Callable[[], bool], delay: float) -> None:
    assert sc.run is not None
    while not trigger():  # pytest-timeout bounds the wait
        assert sc.run.proc.poll() is None, (
            f"{sc.name}: exited before the kill point\n{sc.run.stderr[-2000:]}"
        )
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
    backends = ["local", "gcs"]  # the blob-temp point (first) is local: GCS leaves no temps
    scenarios = [
        Scenario("reference", "local"),
        Scenario("after-generation-checkpoint", "gcs"),
        Scenario("random-in-training", "local"),
        *(Scenario(p, backends[i % 2], crash_at=p) for i, p in enumerate(POINTS)),
    ]
    for sc in scenarios:
        sc.uri = new_gs_uri() if sc.backend == "gcs" else str(tmp_path / sc.name / "store")
        seeded(root_store, sc.uri)
        sc.run = start(_argv(sc.uri, sc.crash_at), tmp_path / sc.name, "first")
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
    assert reference["iteration"] == 0

    blob_temp = by[BLOB_TEMP]
    temps = [d.key for d in stores[BLOB_TEMP].objects.debris("blobs/") if d.key.endswith(".tmp")]
    assert temps, "the blob-temp crash left no temp file to clean up"
    _age(Path(blob_temp.uri), temps, DEBRIS_AGE + 60)  # as if killed long ago

    for sc in scenarios[1:]:  # restart the killed ones, concurrently
        sc.run = start(_argv(sc.uri, None), tmp_path / sc.name, "resumed")
    for sc in scenarios[1:]:
        assert sc.run is not None
        assert sc.run.wait() == 0, f"{sc.name}: {sc.run.stderr[-3000:]}"
        store = stores[sc.name]
        log = sc.run.stdout + sc.run.stderr
        assert final_state(store, TASK) == reference, f"{sc.name} ({sc.killed_at})\n{log}"
        summary = json.loads(sc.run.stdout[sc.run.stdout.index("{\n") :])
        assert summary["no_forgetting_verified"] is True, sc.name
        assert store.load_resume(TASK) is None, sc.name
        lease = json.loads(store.objects.read(lease_key)[0])
        assert lease["released"], sc.name
        refs = collect_garbage(store, grace_seconds=0, dry_run=True)
        assert refs.kept == len(
            {e["blob"] for m in store.manifests().values() for e in m["components"].values()}
        ), sc.name
        assert store.scan().ok, sc.name
        assert main(["verify", "--store", sc.uri, "--device", "cpu"]) == 0, sc.name
    assert not any(d.key in temps for d in stores[BLOB_TEMP].objects.debris()), "not swept"
    assert "resumed at generation 1" in _log(by["after-generation-checkpoint"])
    assert "resumed at generation 1" in _log(by["after-checkpoint"])
    assert f"resumed at generation {ARGS['generations']}" in _log(by["before-manifest"])
    for point in ("after-manifest", "during-check", "after-check"):
        assert "finishing its checks instead of training again" in _log(by[point]), point


def _age(root: Path, keys: list[str], seconds: float) -> None:
    """Backdate local files (leftovers of a kill) by ``seconds``."""
    for key in keys:
        path = root / key
        st = path.stat()
        os.utime(path, (st.st_atime - seconds, st.st_mtime - seconds))


def _log(sc: Scenario) -> str:
    assert sc.run is not None
    return sc.run.stdout + sc.run.stderr


def test_missing_resume_state_is_not_an_error(store_uri: str) -> None:
    store = SystemStore.open(store_uri)
    assert store.load_resume("nothing") is None
    store.clear_resume("nothing")
    with pytest.raises(NotFound):
        store.objects.read("tasks/nothing/resume.json")
