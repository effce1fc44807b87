"""apply against the API stand-in: two plans made from the same read race; the API server's
resourceVersion precondition lets the first commit through and refuses the stale second one,
which then announces nothing (no lock needed, one event per transition)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from op_fakeapi import RunningApi, serve_fake_api
from op_samples import INTRO

from mutask.operator import api
from mutask.operator.actions import Count, Create, Event, Plan
from mutask.operator.apply import apply
from mutask.operator.kube import Kube, load_client_config, ti_path
from mutask.operator.spec import parse_introduction

TI = "mutask.dev/v1alpha1/taskintroductions"


@pytest.fixture
def kube(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[RunningApi, Kube]]:
    with serve_fake_api() as running:
        monkeypatch.setenv("KUBECONFIG", str(running.kubeconfig(tmp_path / "kubeconfig")))
        yield running, Kube(client.ApiClient(load_client_config()))


def plan_for(kube: Kube, state: str) -> Plan:
    body = kube.get(ti_path("ml", "digits-1"))
    assert body is not None
    ref = parse_introduction(body).ref
    return Plan(
        target=ref,
        state=state,
        message=state,
        status={"phase": state},
        announce=(Event(ref, state, state), Count("jobs_failed", 0)),
    )


def events(running: RunningApi) -> list[str]:
    return [e["reason"] for e in running.fake.all("v1/events")]


def test_stale_plan_is_refused_and_silent(kube: tuple[RunningApi, Kube]) -> None:
    running, k = kube
    k.create(ti_path("ml"), copy.deepcopy(INTRO))
    first, stale = plan_for(k, api.RUNNING), plan_for(k, api.QUEUED)
    assert first.target.resource_version == stale.target.resource_version
    assert apply(k, first) is True
    assert apply(k, stale) is False
    assert (running.fake.get(TI, "ml", "digits-1") or {})["status"]["phase"] == api.RUNNING
    assert events(running) == [api.RUNNING]
    assert apply(k, plan_for(k, api.SUCCEEDED)) is True  # a fresh read commits again
    assert events(running) == [api.RUNNING, api.SUCCEEDED]


def test_create_finds_existing_and_announces_only_creation(kube: tuple[RunningApi, Kube]) -> None:
    running, k = kube
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "mti-x", "namespace": "ml"},
        "data": {"a": "1"},
    }
    k.create(ti_path("ml"), copy.deepcopy(INTRO))
    ref = parse_introduction(k.get(ti_path("ml", "digits-1")) or {}).ref
    made = Plan(target=ref, state="", message="", actions=(Create(cm, Event(ref, "Made", "")),))
    assert apply(k, made) and apply(k, made)
    assert events(running) == ["Made"]
