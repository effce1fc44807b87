"""The pure plans as tables: observed world -> (state, actions, status, announcements, claims).

No API, no clock: each row builds an ``Observed`` and checks what ``plan_introduction`` or
``plan_system`` decide. A second pass re-plans with the committed status and expects a fixpoint
(no status change, nothing announced): the plan is idempotent.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
from op_plan_rows import ADMISSION_ROWS, READY, V5E_4X4, Row, S, state
from op_plan_rows_run import RUN_ROWS
from op_samples import INTRO, NOW, SYSTEM, merged

from mutask.operator import api
from mutask.operator.actions import (
    Claim,
    Count,
    Create,
    Event,
    Plan,
)
from mutask.operator.plan import Observed, plan_introduction
from mutask.operator.spec import parse_introduction, parse_system
from mutask.trainer.config import IntroduceConfig

ROWS = [*ADMISSION_ROWS, *RUN_ROWS]
ADMITTED = next(r for r in ROWS if r.id == "admitted")


def world(row: Row, status: dict[str, Any] | None = None) -> Observed:
    return Observed(
        status=row.status if status is None else status,
        now=NOW,
        job=row.job,
        system=parse_system(SYSTEM) if row.system else None,
        system_status=row.system_status if row.system else None,
        peers=row.peers,
        preemptions=row.preemptions,
        unschedulable=row.unschedulable,
        jobset_api=row.jobset_api,
        host_failure=row.host_failure,
    )


def plan(row: Row, status: dict[str, Any] | None = None) -> Plan:
    intro = parse_introduction(merged(INTRO, **row.spec))
    return plan_introduction(intro, world(row, status), S)


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_introduction_plan(row: Row) -> None:
    p = plan(row)
    assert p.state == row.state
    assert row.message in p.message, p.message
    assert tuple(type(a) for a in p.actions) == row.actions
    if row.kinds:
        kinds = tuple(a.body["kind"] if isinstance(a, Create) else a.kind for a in p.actions)
        assert kinds == row.kinds
    assert tuple(type(c) for c in p.claims) == row.claims
    assert tuple(a.counter for a in p.announce if isinstance(a, Count)) == row.counts
    events = [a for a in p.announce if isinstance(a, Event) and a.reason != "Preempted"]
    assert bool(events) is row.event
    for e in events:
        warning = row.state in (api.FAILED, api.PENDING)
        assert (e.reason, e.warning) == (row.reason or row.state, warning)
    assert (p.wakes == ("ml", "vision")) is row.wakes
    committed = {**row.status, **p.status}
    conditions = {c["type"]: c for c in committed["conditions"]}
    assert conditions[row.state]["status"] == "True"
    assert conditions[row.state]["reason"] == (row.reason or row.state)
    assert committed["phase"] == row.state  # derived from the conditions, for printing
    for c in conditions.values():
        assert c["observedGeneration"] == 1 and c["reason"] and "lastTransitionTime" in c
    exclusive = [
        t
        for t in (api.PENDING, api.QUEUED, api.RUNNING, api.SUSPENDED, api.SUCCEEDED, api.FAILED)
        if conditions.get(t, {}).get("status") == "True"
    ]
    assert len(exclusive) <= 1
    again = plan(row, committed)  # the committed status is a fixpoint
    assert again.status == {} and again.announce == () and again.state == row.state


def test_admitted_creates_configmap_then_job_announcing_the_launch() -> None:
    p = plan(ADMITTED)
    cm, jb = p.actions
    assert isinstance(cm, Create) and isinstance(jb, Create)
    assert (cm.body["kind"], jb.body["kind"]) == ("ConfigMap", "Job")
    assert jb.on_created is not None and jb.on_created.reason == "Launched"
    assert p.status["jobName"] == "mti-digits-1" and p.status["startTime"] == NOW
    (claim,) = p.claims
    assert claim == Claim(("ml", "vision"), "digits-1", "digits")


@pytest.mark.parametrize("empty", [True, False])
def test_first_introduction_into_an_empty_store_creates_the_root(empty: bool) -> None:
    """No root bootstrap on the system: the first introduction's trainer creates the root (it
    skips that when the store holds one); the ConfigMap and Job stay the introduction's."""
    cm, jb = plan(replace(ADMITTED, system_status={**READY, "storeEmpty": empty})).actions
    assert isinstance(cm, Create) and isinstance(jb, Create)
    assert IntroduceConfig.from_json(cm.body["data"]["config.json"]).bootstrap_root is empty
    owners = [b["metadata"]["ownerReferences"][0]["name"] for b in (cm.body, jb.body)]
    assert owners == ["digits-1", "digits-1"]


def test_invalid_spec_is_not_accepted() -> None:
    row = next(r for r in ROWS if r.id == "invalid-spec")
    conditions = {c["type"]: c for c in plan(row).status["conditions"]}
    assert conditions[api.ACCEPTED]["status"] == "False"
    assert conditions[api.ACCEPTED]["reason"] == api.FAILED


def test_transitions_keep_times_of_unchanged_conditions() -> None:
    row = next(r for r in ROWS if r.id == "job-running")
    p = plan(row)
    conditions = {c["type"]: c for c in p.status["conditions"]}
    assert conditions[api.ACCEPTED]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert conditions[api.RUNNING]["lastTransitionTime"] == NOW


def test_preemptions_are_counted_and_announced_once() -> None:
    row = next(r for r in ROWS if r.id == "preempted")
    p = plan(row)
    assert p.status["preemptions"] == 2
    (count,) = [a for a in p.announce if isinstance(a, Count)]
    assert count.amount == 2
    assert [a.reason for a in p.announce if isinstance(a, Event)] == ["Preempted"]


def test_no_forgetting_progress_becomes_a_condition() -> None:
    row = replace(
        next(r for r in ROWS if r.id == "succeeded-is-final"),
        status={**state(api.SUCCEEDED), "progress": {"noForgettingVerified": False}},
    )
    conditions = {c["type"]: c for c in plan(row).status["conditions"]}
    assert conditions[api.NO_FORGETTING]["status"] == "False"
    assert conditions[api.NO_FORGETTING]["reason"] == "ForgettingDetected"


def test_a_bad_default_slice_names_the_systems_field() -> None:
    bad = {"type": "tpu", "tpu": {**V5E_4X4["tpu"], "topology": "4x4", "chips": 8}}
    system = merged(SYSTEM, defaults={**SYSTEM["spec"]["defaults"], "accelerator": bad})
    world = Observed(status={}, now=NOW, system=parse_system(system), system_status=READY)
    p = plan_introduction(parse_introduction(INTRO), world, S)
    assert p.state == api.FAILED
    assert "MultitaskSystem vision spec.defaults.accelerator.tpu.chips must be 4" in p.message
