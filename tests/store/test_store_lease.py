"""Fencing by lease on both backends: one holder per task, takeover, loss, independence."""

from __future__ import annotations

import json
import threading
import time

import pytest

from mutask.trainer.errors import ConfigError
from mutask.trainer.store.lease import Lease, LeaseLost, default_ttl
from mutask.trainer.store.objects import ObjectStore


def test_first_holder_wins_a_live_second_is_refused(objects: ObjectStore) -> None:
    with Lease(objects, "t", holder="a", ttl=0.6) as a:
        doc = json.loads(objects.read("tasks/t/lease.json")[0])
        assert doc["holder"] == "a" and not doc["released"]
        b = Lease(objects, "t", holder="b", ttl=0.6)
        with pytest.raises(LeaseLost, match=r"another writer .*a.* holds the lease"):
            b.acquire(poll=0.02)  # sees a's renewals: a is alive
        a.confirm()
        assert not a.lost
    # released on exit: a successor takes it at once (waiting for an hour-long ttl to expire
    # instead would run into pytest-timeout, the only clock tests have)
    assert json.loads(objects.read("tasks/t/lease.json")[0])["released"]
    with Lease(objects, "t", holder="c", ttl=3600) as c:
        assert c.generation is not None


def test_silent_holder_is_taken_over_and_discovers_it(objects: ObjectStore) -> None:
    stale = Lease(objects, "t", holder="stale", ttl=0.5)
    stale.acquire()  # acquired but never renewed: a killed (or frozen) pod
    with Lease(objects, "t", holder="new", ttl=0.5) as new:
        with pytest.raises(LeaseLost, match=r"lost the lease .* to new"):
            stale.confirm()
        assert stale.lost
        with pytest.raises(LeaseLost):
            stale.check()  # what the training loop polls
        new.confirm()
    stale.release()  # must not clobber the successor's lease
    assert json.loads(objects.read("tasks/t/lease.json")[0])["holder"] == "new"


def test_background_renewal_detects_the_loss(objects: ObjectStore) -> None:
    lease = Lease(objects, "t", holder="x", ttl=0.3)
    with lease:
        gen = lease.generation
        time.sleep(0.35)
        assert lease.generation != gen  # renewed meanwhile
        _, current = objects.read("tasks/t/lease.json")
        objects.write("tasks/t/lease.json", b'{"holder": "thief"}', if_generation=current)
        while not lease.lost:  # bounded by pytest-timeout
            time.sleep(0.02)
        assert lease.lost
        with pytest.raises(LeaseLost, match="thief"):
            lease.check()


def test_different_tasks_never_block_each_other(objects: ObjectStore) -> None:
    acquired: list[str] = []

    def hold(task: str) -> None:
        with Lease(objects, task, ttl=3600):  # a wait for another task's lease never ends
            acquired.append(task)
            time.sleep(0.2)

    threads = [threading.Thread(target=hold, args=(f"task{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(acquired) == [f"task{i}" for i in range(4)]


def test_ttl_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUTASK_LEASE_TTL", "2.5")
    assert default_ttl() == 2.5
    monkeypatch.setenv("MUTASK_LEASE_TTL", "soon")
    with pytest.raises(ConfigError, match="MUTASK_LEASE_TTL='soon'"):
        default_ttl()  # bad input: exit 2
