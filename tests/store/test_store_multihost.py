"""A multi-host run as N `mutask introduce` processes on one store (a local folder, and a bucket
on a real fake-gcs-server), each told its place as the operator's JobSet tells its pods
(``MUTASK_HOST_INDEX``, ``MUTASK_HOSTS``, ``MUTASK_ATTEMPT``).

Every host trains its share of each generation's candidates; host 0 alone holds the lease,
publishes and verifies; the published task is bit-identical (same path, same parameter
hashes, same score and test accuracy) to what one process publishes with the same seed. A host
killed with SIGKILL mid-generation: the set restarts (a new attempt), resumes from host 0's
checkpoint and the candidates already stored, and re-trains only the missing ones.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from store_testutil import Run, final_state, introduce_argv, start, wait_for

from mutask.contract import ENV_ATTEMPT, ENV_HOST_INDEX, ENV_HOSTS, ExitCode
from mutask.trainer.store.objects import LocalObjectStore, NotFound, ObjectStore
from mutask.trainer.store.system_store import SystemStore

pytestmark = pytest.mark.slow
TASK = "rot90"


def argv(store: str, generations: int, candidates: int) -> list[str]:
    return [
        *introduce_argv(store, TASK, transform="rot90", generations=generations, steps=4),
        "--candidates",
        str(candidates),
    ]


def hosts(cmd: list[str], workdir: Path, count: int, attempt: str) -> list[Run]:
    return [
        start(
            cmd,
            workdir,
            f"{attempt}-host{i}",
            **{ENV_HOST_INDEX: str(i), ENV_HOSTS: str(count), ENV_ATTEMPT: attempt},
        )
        for i in range(count)
    ]


def finish(runs: list[Run]) -> None:
    for i, run in enumerate(runs):
        assert run.wait() == ExitCode.OK, f"host {i}: {run.stderr[-3000:]}"


def reference(
    root: Path, seeded: Callable[[Path, str], str], uri: str, workdir: Path, generations: int
) -> dict[str, Any]:
    """What one process publishes (its store seeded from the same root)."""
    seeded(root, uri)
    finish([start(argv(uri, generations, 3), workdir, "one")])
    return final_state(SystemStore.open(uri), TASK)


@pytest.mark.parametrize("count", [2, 3])
def test_hosts_publish_exactly_what_one_process_does(
    count: int, root_store: Path, seeded: Callable[[Path, str], str], tmp_path: Path
) -> None:
    one = reference(root_store, seeded, str(tmp_path / "one"), tmp_path, 2)
    store = seeded(root_store, str(tmp_path / "hosts"))
    runs = hosts(argv(store, 2, 3), tmp_path, count, "a")
    finish(runs)
    assert final_state(SystemStore.open(store), TASK) == one
    assert '"task": "rot90"' in runs[0].stdout  # host 0 reports the result
    assert all('"task"' not in r.stdout for r in runs[1:])  # the others publish nothing
    assert not list(Path(store, "tasks", TASK).glob("exchange/**/*.json")), "records cleared"


def test_successive_halving_across_hosts_matches_one_process(
    root_store: Path, seeded: Callable[[Path, str], str], tmp_path: Path
) -> None:
    """Four candidates, three rounds: after each round the hosts share every candidate's
    round quality through the store and keep the same better half (4, 2, 1), then host 0
    trains the final phase; the result is what one process publishes."""
    cmd = [*argv("", 1, 4), "--rounds", "3"]
    one_uri, hosts_uri = str(tmp_path / "one"), str(tmp_path / "hosts")
    seeded(root_store, one_uri)
    alone = start(_with_store(cmd, one_uri), tmp_path, "one")
    finish([alone])
    assert "successive halving" in alone.stderr
    seeded(root_store, hosts_uri)
    runs = hosts(_with_store(cmd, hosts_uri), tmp_path, 2, "a")
    finish(runs)
    assert final_state(SystemStore.open(hosts_uri), TASK) == final_state(
        SystemStore.open(one_uri), TASK
    )
    manifest = SystemStore.open(hosts_uri).read_manifest(TASK)
    assert manifest is not None and manifest[0]["training"]["final_examples"] > 0


def _with_store(cmd: list[str], uri: str) -> list[str]:
    """``cmd`` with its ``--store`` value replaced by ``uri``."""
    i = cmd.index("--store")
    return [*cmd[: i + 1], uri, *cmd[i + 2 :]]


def test_hosts_on_a_gcs_bucket(
    gs_uri: str,
    new_gs_uri: Callable[[], str],
    root_store: Path,
    seeded: Callable[[Path, str], str],
    tmp_path: Path,
) -> None:
    one = reference(root_store, seeded, new_gs_uri(), tmp_path, 1)
    seeded(root_store, gs_uri)
    finish(hosts(argv(gs_uri, 1, 3), tmp_path, 2, "a"))
    assert final_state(SystemStore.open(gs_uri), TASK) == one


def _records(objects: ObjectStore, generation: int) -> dict[int, int]:
    """The candidates of ``generation`` (0-based) with a stored record, and the host (worker)
    that trained each: the hosts split a generation by cost, each record names its worker."""
    out: dict[int, int] = {}
    for info in objects.list(f"tasks/{TASK}/exchange/"):
        m = re.search(rf"/g{generation}/c(\d+)\.json$", info.key)
        if m:
            with contextlib.suppress(NotFound):  # a record removed while listing
                out[int(m.group(1))] = int(json.loads(objects.read(info.key)[0])["worker"])
    return out


def test_a_host_killed_mid_generation_resumes_from_the_stored_candidates(
    root_store: Path, seeded: Callable[[Path, str], str], tmp_path: Path
) -> None:
    """As soon as one host has stored its share of generation 2 and the other has not, the
    other one gets SIGKILL mid-generation and the first SIGTERM (as JobSet's restart of the
    whole set does). The restarted set (a new attempt) re-trains only the missing candidates
    and publishes what one process does."""
    one = reference(root_store, seeded, str(tmp_path / "one"), tmp_path, 2)
    store = seeded(root_store, str(tmp_path / "hosts"))
    cmd = argv(store, 2, 3)
    objects = LocalObjectStore(store)
    first = hosts(cmd, tmp_path, 2, "a")

    stored: dict[int, int] = {}

    def one_host_stored() -> bool:  # generation 2: one host has stored, the other nothing
        stored.clear()
        stored.update(_records(objects, 1))
        return len(set(stored.values())) == 1

    wait_for(one_host_stored, first[0], poll=0.01)
    victim = 1 - next(iter(stored.values()))
    print(f"stored {stored}: SIGKILL host {victim}")
    first[victim].proc.send_signal(signal.SIGKILL)
    first[1 - victim].proc.send_signal(signal.SIGTERM)
    assert first[victim].wait() == -signal.SIGKILL
    assert first[1 - victim].wait() in (ExitCode.PREEMPTED, ExitCode.FAILED)
    kept = _records(objects, 1)  # what the first attempt stored of generation 2
    assert victim not in kept.values(), f"the killed host stored its share ({kept}): no gap"
    second = hosts(cmd, tmp_path, 2, "b")
    finish(second)
    assert final_state(SystemStore.open(store), TASK) == one
    for h, run in enumerate(second):  # generation 2 (stderr): each re-trains only what was lost
        reused = sorted(k for k, worker in kept.items() if worker == h)
        if reused:
            line = f"generation 2: worker {h + 1}/2 reuses candidates {reused} an earlier attempt"
            assert line in run.stderr, (line, run.stderr[-2000:])
        else:
            assert "reuses" not in run.stderr, run.stderr[-2000:]
    for run in second:  # generation 1 came from host 0's checkpoint, not from training
        assert "resumed at generation 1" in run.stderr, run.stderr[-2000:]
