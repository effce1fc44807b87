"""Pure logic: admission (one per task, concurrency, oldest first), Job -> phase, status."""

from __future__ import annotations

from typing import Any

import pytest

from mutask.operator import api, settings
from mutask.operator.admission import Claims, Peer, admit
from mutask.operator.conditions import current_state, job_state, set_condition, ti_status
from mutask.operator.objects import child_name, is_preempted, unschedulable
from mutask.operator.storage import ProbeResult, StorageProber, probe_file

ME = Peer("me", "digits", api.NEW, "2026-01-01T00:00:05Z")

ADMISSION = [
    ("alone", [], 2, True),
    ("same-task-active", [Peer("a", "digits", api.RUNNING, "2026-01-01T00:00:01Z")], 4, False),
    (
        "same-task-older-waiting",
        [Peer("a", "digits", api.QUEUED, "2026-01-01T00:00:01Z")],
        4,
        False,
    ),
    ("same-task-newer-waiting", [Peer("z", "digits", api.QUEUED, "2026-01-01T00:00:09Z")], 4, True),
    ("same-task-done", [Peer("a", "digits", api.SUCCEEDED, "2026-01-01T00:00:01Z")], 4, True),
    (
        "same-task-suspended",
        [Peer("a", "digits", api.SUSPENDED, "2026-01-01T00:00:01Z", True)],
        4,
        True,
    ),
    ("limit-reached", [Peer("a", "x", api.RUNNING), Peer("b", "y", api.ACCEPTED)], 2, False),
    ("limit-free", [Peer("a", "x", api.RUNNING), Peer("b", "y", api.FAILED)], 2, True),
    # an unschedulable pod's Job exists: it keeps its slot (and its task) until placed
    ("unschedulable-holds-slot", [Peer("a", "x", api.PENDING)], 1, False),
    ("unschedulable-same-task", [Peer("a", "digits", api.PENDING)], 4, False),
    ("never-reconciled-older", [Peer("a", "x", api.NEW, "2026-01-01T00:00:01Z")], 1, False),
    (
        "older-other-task-first",
        [Peer("a", "x", api.RUNNING), Peer("b", "y", api.QUEUED, "2026-01-01T00:00:01Z")],
        2,
        False,
    ),
    (
        "older-blocked-task-not-ahead",
        [Peer("a", "x", api.RUNNING), Peer("b", "x", api.QUEUED, "2026-01-01T00:00:01Z")],
        2,
        True,
    ),
]


@pytest.mark.parametrize(
    ("peers", "limit", "ok"), [a[1:] for a in ADMISSION], ids=[a[0] for a in ADMISSION]
)
def test_admission(peers: list[Peer], limit: int, ok: bool) -> None:
    admitted, why = admit(ME, [ME, *peers], limit)
    assert admitted is ok
    assert bool(why) is not ok


def test_claims_overlay_marks_admitted_and_expires() -> None:
    claims = Claims(ttl_seconds=60)
    claims.claim(("ns", "s"), "me", "digits")
    peers = claims.overlay(("ns", "s"), [Peer("me", "digits", api.QUEUED)])
    assert peers[0].state == api.ACCEPTED
    assert admit(Peer("other", "digits"), peers, 4)[0] is False
    claims.release(("ns", "s"), "me")
    assert claims.overlay(("ns", "s"), [])[:] == []
    claims = Claims(ttl_seconds=-1)
    claims.claim(("ns", "s"), "me", "digits")
    assert claims.overlay(("ns", "s"), []) == []


def job(status: dict[str, Any], suspend: bool = False) -> dict[str, Any]:
    return {"spec": {"suspend": suspend}, "status": status}


JOBS = [
    ("created", job({}), False, api.ACCEPTED),
    ("running", job({"active": 1}), False, api.RUNNING),
    (
        "complete",
        job({"conditions": [{"type": "Complete", "status": "True"}]}),
        False,
        api.SUCCEEDED,
    ),
    (
        "failed",
        job(
            {"conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}]}
        ),
        False,
        api.FAILED,
    ),
    ("suspended", job({}, suspend=True), False, api.SUSPENDED),
    ("kueue-pending", job({}, suspend=True), True, api.QUEUED),
    ("kueue-admitted", job({"active": 1}), True, api.RUNNING),
]


@pytest.mark.parametrize(
    ("body", "kueue", "expected"), [j[1:] for j in JOBS], ids=[j[0] for j in JOBS]
)
def test_job_phase(body: dict[str, Any], kueue: bool, expected: str) -> None:
    assert job_state(body, kueue=kueue)[0] == expected


def test_ti_status_transitions() -> None:
    ti: dict[str, Any] = {"metadata": {"generation": 3}, "status": {}}
    s1 = ti_status(ti["status"], 3, api.ACCEPTED, "created", "t1", job_name="j")
    assert s1["phase"] == api.ACCEPTED and s1["observedGeneration"] == 3 and s1["startTime"] == "t1"
    ti["status"] = {
        **s1,
        "progress": {"generation": 1, "generations": 4, "noForgettingVerified": False},
    }
    s2 = ti_status(ti["status"], 3, api.RUNNING, "running", "t2", job_name="j")
    conds = {c["type"]: c for c in s2["conditions"]}
    assert conds[api.RUNNING]["status"] == "True"
    assert conds[api.ACCEPTED]["lastTransitionTime"] == "t1"  # unchanged status keeps its time
    assert conds[api.NO_FORGETTING]["status"] == "False"
    assert s2["generationProgress"] == "1/4" and "startTime" not in s2
    ti["status"] = {**ti["status"], **s2}
    s3 = ti_status(ti["status"], 3, api.SUCCEEDED, "done", "t3", job_name="j", preemptions=2)
    conds = {c["type"]: c for c in s3["conditions"]}
    assert (
        conds[api.RUNNING]["status"] == "False" and conds[api.RUNNING]["lastTransitionTime"] == "t3"
    )
    assert s3["completionTime"] == "t3" and s3["preemptions"] == 2


def test_unschedulable_is_a_pending_state_with_its_reason() -> None:
    assert current_state({}) == api.NEW  # never reconciled: no condition yet
    old = ti_status({}, 1, api.RUNNING, "running", "t1", job_name="j")
    why = "trainer pod unschedulable: 0/9 nodes are available"
    st = ti_status(old, 1, api.PENDING, why, "t2", job_name="j", reason=api.UNSCHEDULABLE)
    conds = {c["type"]: c for c in st["conditions"]}
    assert st["phase"] == current_state(st) == api.PENDING
    assert (conds[api.PENDING]["status"], conds[api.PENDING]["reason"]) == ("True", "Unschedulable")
    assert conds[api.PENDING]["message"] == why
    assert (conds[api.RUNNING]["status"], conds[api.RUNNING]["reason"]) == ("False", api.PENDING)
    back = ti_status({**old, **st}, 1, api.RUNNING, "running", "t3", job_name="j")
    conds = {c["type"]: c for c in back["conditions"]}
    assert back["phase"] == api.RUNNING and conds[api.PENDING]["status"] == "False"


@pytest.mark.parametrize(
    ("conditions", "expected"),
    [
        (
            [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "reason": "Unschedulable",
                    "message": "m",
                }
            ],
            "m",
        ),
        ([{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}], "no node fits"),
        ([{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}], None),
        ([{"type": "PodScheduled", "status": "True"}], None),
        ([], None),
    ],
)
def test_unschedulable_pod(conditions: list[dict[str, str]], expected: str | None) -> None:
    why = unschedulable({"status": {"phase": "Pending", "conditions": conditions}})
    if expected is None:
        assert why is None
    else:
        assert why is not None and expected in why


def test_set_condition_reasons_are_one_word() -> None:
    conds = set_condition([], "Queued", True, "Queued", "m", "t")
    assert conds == [
        {
            "type": "Queued",
            "status": "True",
            "reason": "Queued",
            "message": "m",
            "lastTransitionTime": "t",
        }
    ]


def test_is_preempted() -> None:
    failed = {"status": {"phase": "Failed"}}
    assert not is_preempted(failed)
    assert is_preempted(
        {
            "status": {
                "phase": "Failed",
                "conditions": [{"type": "DisruptionTarget", "status": "True"}],
            }
        }
    )
    sigterm = {
        "status": {
            "phase": "Failed",
            "containerStatuses": [{"name": "trainer", "state": {"terminated": {"exitCode": 75}}}],
        }
    }
    assert is_preempted(sigterm)
    assert not is_preempted(
        {
            "status": {
                "phase": "Running",
                "conditions": [{"type": "DisruptionTarget", "status": "True"}],
            }
        }
    )


def test_child_names() -> None:
    assert child_name("mti", "abc") == "mti-abc"
    long = child_name("mti", "a" * 100, limit=52)
    assert len(long) == 52 and long == child_name("mti", "a" * 100, limit=52)
    assert child_name("mti", "a" * 100 + "x", limit=52) != long


def test_storage_probe(tmp_path: Any) -> None:
    assert probe_file(str(tmp_path / "nope")).reachable is False
    assert probe_file(str(tmp_path)) == ProbeResult(True, True, f"{tmp_path} is empty")
    (tmp_path / "f").write_text("x")
    assert probe_file(str(tmp_path)).empty is False
    seen: list[tuple[str, str]] = []

    def fake_gcs(bucket: str, prefix: str) -> ProbeResult:
        seen.append((bucket, prefix))
        return ProbeResult(True, False, "ok")

    prober = StorageProber(gcs=fake_gcs)
    assert prober("gs://bkt/systems/vision").reachable
    assert seen == [("bkt", "systems/vision/")]
    assert prober("s3://x").reachable is False


def test_settings_from_env() -> None:
    s = settings.load(
        ["-A"],
        {
            "MUTASK_BACKOFF_LIMIT": "3",
            "MUTASK_RESYNC_SECONDS": "0.5",
            "MUTASK_TRAINER_IMAGE_TPU": "img:tpu",
        },
    )
    assert (s.backoff_limit, s.resync_seconds, s.image_for("tpu")) == (3, 0.5, "img:tpu")


def test_cli_flags() -> None:
    args = settings.load(
        ["--namespace", "a", "-n", "b", "--metrics-port", "9", "--standalone", "-v"], {}
    )
    assert (
        args.namespaces == ("a", "b")
        and args.metrics_port == 9
        and args.standalone
        and args.verbose
    )
    assert settings.load(["--all-namespaces"], {}).all_namespaces
    with pytest.raises(SystemExit):
        settings.load([], {})
    with pytest.raises(SystemExit):
        settings.load(["-A", "-n", "x"], {})
