"""The trainer-side progress reporter: key mapping, rate limiting, never raising."""

from __future__ import annotations

from typing import Any

import pytest

from mutask.trainer.runtime.kube_status import KubeStatusReporter, camel, to_progress


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def make() -> tuple[KubeStatusReporter, list[tuple[str, str, dict[str, Any]]], Clock]:
    calls: list[tuple[str, str, dict[str, Any]]] = []
    clock = Clock()
    rep = KubeStatusReporter("ns", "ti", lambda n, m, b: calls.append((n, m, b)), clock=clock)
    return rep, calls, clock


def test_from_env_none_without_variable() -> None:
    assert KubeStatusReporter.from_env({}) is None
    assert KubeStatusReporter.from_env({"MUTASK_TASKINTRODUCTION": "no-slash"}) is None


def test_keys_are_camel_cased() -> None:
    snake = {
        "generation": 1,
        "generations": 2,
        "candidates_trained": 3,
        "candidates_total": 4,
        "best_score": 0.5,
        "best_accuracy": 0.6,
        "accounted_params": 7.0,
        "penalty": 0.1,
        "params_added": 8,
        "checkpoint_uri": "gs://x",
        "test_accuracy": 0.9,
        "no_forgetting_verified": True,
        "component_count": 12,
    }
    assert set(to_progress(snake)) == {
        "generation",
        "generations",
        "candidatesTrained",
        "candidatesTotal",
        "bestScore",
        "bestAccuracy",
        "accountedParams",
        "penalty",
        "paramsAdded",
        "checkpointURI",
        "testAccuracy",
        "noForgettingVerified",
        "componentCount",
    }
    assert camel("system_params") == "systemParams"


def test_patch_body_and_rate_limit() -> None:
    rep, calls, clock = make()
    rep({"generation": 1, "best_score": 0.5})
    assert len(calls) == 1
    ns, name, body = calls[0]
    assert (ns, name) == ("ns", "ti")
    assert (
        body["status"]["progress"]["generation"] == 1 and "updateTime" in body["status"]["progress"]
    )
    assert set(body) == {"status"} and set(body["status"]) == {"progress"}
    clock.t += 0.5
    rep({"candidates_trained": 2})
    rep({"best_score": 0.7})
    assert len(calls) == 1  # held back
    clock.t += 2.0
    rep({"generation": 2})
    assert len(calls) == 2
    sent = calls[1][2]["status"]["progress"]
    assert sent["candidatesTrained"] == 2 and sent["bestScore"] == 0.7 and sent["generation"] == 2


def test_final_update_is_never_held() -> None:
    rep, calls, _clock = make()
    rep({"generation": 1})
    rep({"test_accuracy": 0.9})
    rep({"generation": 2}, final=True)
    assert len(calls) == 3


def test_flush_sends_pending() -> None:
    rep, calls, _ = make()
    rep({"generation": 1})
    rep({"generation": 2})
    rep.flush()
    assert [c[2]["status"]["progress"]["generation"] for c in calls] == [1, 2]
    rep.flush()
    assert len(calls) == 2


def test_never_raises_and_retries_pending() -> None:
    calls: list[dict[str, Any]] = []
    fail = {"on": True}

    def patch(ns: str, name: str, body: dict[str, Any]) -> None:
        if fail["on"]:
            raise RuntimeError("API down")
        calls.append(body)

    clock = Clock()
    rep = KubeStatusReporter("ns", "ti", patch, clock=clock)
    rep({"generation": 1})  # logged, not raised
    fail["on"] = False
    clock.t += 3
    rep({"best_score": 0.4})
    assert calls[0]["status"]["progress"]["generation"] == 1  # kept and resent


def test_numpy_like_scalars() -> None:
    class Scalar:
        def item(self) -> float:
            return 0.25

    assert to_progress({"best_score": Scalar()}) == {"bestScore": 0.25}


@pytest.mark.parametrize("value", ["ns/name", "a/b"])
def test_from_env_parses_namespace_name(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import mutask.trainer.runtime.kube_status as ks

    monkeypatch.setattr(ks, "_kubernetes_patcher", lambda: lambda n, m, b: None)
    rep = KubeStatusReporter.from_env({"MUTASK_TASKINTRODUCTION": value})
    assert rep is not None and f"{rep.namespace}/{rep.name}" == value
