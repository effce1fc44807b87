"""The pure plan of a MultitaskSystem as a table: storage seen, bootstrap Job -> Ready, its
reason, the bootstrap Job to create, storeEmpty; plus the published-task summary."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from op_samples import COMPLETE, FAILED, NOW, SYSTEM, job, merged

from mutask.operator import api
from mutask.operator.actions import Create, Event
from mutask.operator.admission import Peer
from mutask.operator.settings import Settings
from mutask.operator.spec import parse_system
from mutask.operator.system_plan import ClaimSeen, ProbeResult, SystemObserved, plan_system

S = Settings()

BOOT = {"preset": "mu-tiny", "bootstrap": {"task": "digits", "dataset": {"uri": "digits"}}}
PVC_STORE = {"uri": "file:///data/s", "persistentVolumeClaim": {"claimName": "store"}}
IN_USE = ProbeResult(True, False, "in use")
EMPTY = ProbeResult(True, True, "empty")
BOOT_READY = {"conditions": [{"type": "RootReady", "status": "True", "reason": "Bootstrapped"}]}

# (id, spec, old status, storage seen, bootstrap Job, Ready, reason, actions, storeEmpty)
SYSTEMS: list[tuple[str, dict[str, Any], dict[str, Any], Any, Any, bool, str, int, bool]] = [
    ("published", {}, {}, IN_USE, None, True, "Ready", 0, False),
    ("empty-no-bootstrap", {}, {}, EMPTY, None, True, "Ready", 0, True),
    ("unreachable", {}, {}, ProbeResult(False, True, "gone"), None, False, "Unreachable", 0, False),
    ("empty-bootstraps", {"rootModel": BOOT}, {}, EMPTY, None, False, "Bootstrapping", 2, False),
    (
        "bootstrap-running",
        {"rootModel": BOOT},
        {},
        EMPTY,
        job({"active": 1}),
        False,
        "Bootstrapping",
        0,
        False,
    ),
    ("bootstrap-done", {"rootModel": BOOT}, {}, EMPTY, job(COMPLETE), True, "Ready", 0, False),
    ("bootstrap-failed", {"rootModel": BOOT}, {}, EMPTY, job(FAILED), False, "Failed", 0, False),
    (
        "claim-missing",
        {"storage": PVC_STORE},
        {},
        ClaimSeen("store", None),
        None,
        False,
        "Unreachable",
        0,
        False,
    ),
    (
        "claim-lost",
        {"storage": PVC_STORE},
        {},
        ClaimSeen("store", "Lost"),
        None,
        False,
        "Unreachable",
        0,
        False,
    ),
    (
        "claim-pending-bootstraps",
        {"storage": PVC_STORE, "rootModel": BOOT},
        {},
        ClaimSeen("store", "Pending"),
        None,
        False,
        "Bootstrapping",
        2,
        False,
    ),
    (
        "claim-rooted-no-rebootstrap",
        {"storage": PVC_STORE, "rootModel": BOOT},
        BOOT_READY,
        ClaimSeen("store", "Bound"),
        None,
        True,
        "Ready",
        0,
        False,
    ),
]


@pytest.mark.parametrize(
    ("spec", "old", "storage", "boot_job", "ready", "reason", "actions", "store_empty"),
    [s[1:] for s in SYSTEMS],
    ids=[s[0] for s in SYSTEMS],
)
def test_system_plan(
    spec: dict[str, Any],
    old: dict[str, Any],
    storage: Any,
    boot_job: Any,
    ready: bool,
    reason: str,
    actions: int,
    store_empty: bool,
) -> None:
    system = parse_system(merged(SYSTEM, **spec))
    observed = SystemObserved(status=old, now=NOW, storage=storage, bootstrap_job=boot_job)
    p = plan_system(system, observed, S)
    conditions = {c["type"]: c for c in p.status["conditions"]}
    assert conditions[api.READY]["status"] == str(ready)
    assert conditions[api.READY]["reason"] == reason
    assert len(p.actions) == actions
    if actions:
        created = p.actions[-1]
        assert isinstance(created, Create) and created.body["metadata"]["name"] == (
            "mti-vision-bootstrap"
        )
        assert created.on_created is not None and created.on_created.reason == "Bootstrapping"
    assert p.status["storeEmpty"] is store_empty
    (event,) = p.announce
    assert isinstance(event, Event) and (event.reason, event.warning) == (reason, not ready)
    again = plan_system(system, replace(observed, status={**old, **p.status}), S)
    assert again.status == {} and again.announce == ()


def test_system_summary_from_succeeded_introductions() -> None:
    done = Peer(
        "d1",
        "digits",
        api.SUCCEEDED,
        "t0",
        progress={"paramsAdded": 10, "systemParams": 99},
        completion_time="t2",
    )
    older = Peer(
        "d0", "digits", api.SUCCEEDED, "t0", progress={"paramsAdded": 5}, completion_time="t1"
    )
    running = Peer("c", "cifar", api.RUNNING, "t0")
    observed = SystemObserved(status={}, now=NOW, storage=IN_USE, peers=(done, older, running))
    st = plan_system(parse_system(SYSTEM), observed, S).status
    assert st["tasks"] == ["digits"] and st["taskCount"] == 1
    assert st["taskParams"]["digits"]["introduction"] == "d1"
    assert st["totalParams"] == 99 and st["activeIntroductions"] == 1
    assert st["lastPublish"] == "t2"


V5E_4X4 = {
    "type": "tpu",
    "tpu": {"accelerator": "tpu-v5-lite-podslice", "topology": "4x4", "chips": 4},
}


def _multi_host_system() -> Any:
    defaults = {**SYSTEM["spec"]["defaults"], "accelerator": V5E_4X4}
    return parse_system(merged(SYSTEM, rootModel=BOOT, defaults=defaults))


def test_a_multi_host_default_bootstraps_the_root_as_a_jobset() -> None:
    system = _multi_host_system()
    p = plan_system(system, SystemObserved(status={}, now=NOW, storage=EMPTY), S)
    _configmap, created = p.actions
    assert isinstance(created, Create) and created.body["kind"] == "JobSet"
    assert created.body["metadata"]["name"] == "mti-vision-bootstrap"
    assert created.body["metadata"]["ownerReferences"][0]["kind"] == "MultitaskSystem"
    assert created.on_created is not None and "root bootstrap JobSet" in created.on_created.message
    done = {"kind": "JobSet", **job({"conditions": [{"type": "Completed", "status": "True"}]})}
    observed = SystemObserved(status={}, now=NOW, storage=EMPTY, bootstrap_job=done)
    ready = {c["type"]: c for c in plan_system(system, observed, S).status["conditions"]}
    assert ready[api.READY]["status"] == "True"


def test_a_multi_host_bootstrap_without_jobset_says_so() -> None:
    observed = SystemObserved(status={}, now=NOW, storage=EMPTY, jobset_api=False)
    p = plan_system(_multi_host_system(), observed, S)
    assert p.actions == ()
    conditions = {c["type"]: c for c in p.status["conditions"]}
    assert conditions[api.READY]["reason"] == "JobSetNotInstalled"
    assert "install JobSet" in conditions[api.READY]["message"]
