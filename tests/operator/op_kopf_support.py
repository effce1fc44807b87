"""Shared pieces of the operator's end-to-end tests (test_op_kopf_*.py): the operator runner
arguments, object builders and readers against the Kubernetes API stand-in (op_fakeapi), and a
poll that has no clock of its own (pytest-timeout bounds every test)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from op_fakeapi import RunningApi
from op_runner import OperatorRunner

from mutask.operator.kube import Kube, mts_path, ti_path

NS = "ml"
TI_RES = "mutask.dev/v1alpha1/taskintroductions"
MTS_RES = "mutask.dev/v1alpha1/multitasksystems"
ARGS = ["--standalone", "--all-namespaces", "--liveness-port", "0"]


def operator() -> OperatorRunner:
    return OperatorRunner(ARGS, timeout=30)


def wait_for(what: str, fn: Callable[[], Any]) -> Any:
    """Poll ``fn`` until it returns something truthy; ``what`` names the wait in tracebacks."""
    while not (value := fn()):
        time.sleep(0.05)
    return value


def store(tmp_path: Path, empty: bool = False) -> str:
    path = tmp_path / "store"
    path.mkdir(exist_ok=True)
    if not empty:
        (path / "root.json").write_text("{}")
    return f"file://{path}"


def new_system(kube: Kube, uri: str, **spec: Any) -> None:
    body = {
        "apiVersion": "mutask.dev/v1alpha1",
        "kind": "MultitaskSystem",
        "metadata": {"name": "vision", "namespace": NS},
        "spec": {"storage": {"uri": uri}, "maxConcurrentIntroductions": 2, **spec},
    }
    kube.create(mts_path(NS), body)


def new_intro(kube: Kube, name: str, task: str, **spec: Any) -> None:
    body = {
        "apiVersion": "mutask.dev/v1alpha1",
        "kind": "TaskIntroduction",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "systemRef": {"name": "vision"},
            "task": task,
            "dataset": {"uri": "digits"},
            "budget": {"generations": 2, "candidatesPerGeneration": 2},
            **spec,
        },
    }
    kube.create(ti_path(NS), body)


def phase(api: RunningApi, name: str) -> str | None:
    obj = api.fake.get(TI_RES, NS, name) or {}
    value = (obj.get("status") or {}).get("phase")
    return str(value) if value else None


def events(api: RunningApi, name: str) -> list[str]:
    return [e["reason"] for e in api.fake.all("v1/events") if e["involvedObject"]["name"] == name]


def queued(api: RunningApi, name: str) -> str:
    """The message of the introduction's Queued condition ("" if none)."""
    conditions = ((api.fake.get(TI_RES, NS, name) or {}).get("status") or {}).get("conditions")
    return next((c["message"] for c in conditions or [] if c["type"] == "Queued"), "")


def jobs(api: RunningApi) -> list[dict[str, Any]]:
    return api.fake.all("batch/v1/jobs")
