"""End to end: the real operator (``mutask operator``, in-process) against a Kubernetes API
stand-in on 127.0.0.1 (kmock 0.8 + fixes, see op_fakeapi). Job progress, completion, failure and
disruption are simulated by patching Job status / creating Pods through the API."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from op_fakeapi import RunningApi, serve_fake_api
from op_runner import OperatorRunner

from mutask.operator.kube import Kube, core_path, job_path, load_client_config, mts_path, ti_path
from mutask.trainer.config import IntroduceConfig
from mutask.trainer.runtime.kube_status import KubeStatusReporter

NS = "ml"
TI_RES = "mutask.dev/v1alpha1/taskintroductions"
MTS_RES = "mutask.dev/v1alpha1/multitasksystems"
ARGS = ["--standalone", "--all-namespaces", "--liveness-port", "0"]


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[RunningApi, Kube]]:
    monkeypatch.setenv("MUTASK_METRICS_PORT", "0")
    monkeypatch.setenv("MUTASK_RESYNC_SECONDS", "0.5")
    monkeypatch.setenv("MUTASK_SYSTEM_RESYNC_SECONDS", "1")
    with serve_fake_api() as api:
        monkeypatch.setenv("KUBECONFIG", str(api.kubeconfig(tmp_path / "kubeconfig")))
        yield api, Kube(client.ApiClient(load_client_config()))


def operator() -> OperatorRunner:
    return OperatorRunner(ARGS, timeout=30)


def wait_for(what: str, fn: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


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


def test_introduction_lifecycle_progress_preemption_restart(
    cluster: tuple[RunningApi, Kube], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api, kube = cluster
    with operator() as runner:
        new_system(kube, store(tmp_path))
        new_intro(kube, "digits-1", "digits")
        job = wait_for("the trainer Job", lambda: api.fake.get("batch/v1/jobs", NS, "mti-digits-1"))
        ti = api.fake.get(TI_RES, NS, "digits-1")
        assert ti is not None
        assert job["metadata"]["ownerReferences"][0]["uid"] == ti["metadata"]["uid"]
        assert job["spec"]["template"]["spec"]["containers"][0]["args"][:3] == [
            "introduce",
            "--config",
            "/etc/mutask/config.json",
        ]
        cm = api.fake.get("v1/configmaps", NS, "mti-digits-1")
        assert cm is not None
        config = IntroduceConfig.from_json(cm["data"]["config.json"])
        assert (config.task, config.budget.generations, config.budget.candidates) == (
            "digits",
            2,
            2,
        )
        wait_for("Accepted", lambda: phase(api, "digits-1") == "Accepted")
        wait_for("events", lambda: {"Launched", "Accepted"} <= set(events(api, "digits-1")))

        # the scheduler finds no node for the pod: Pending, reason Unschedulable, its words
        kube.merge_patch(job_path(NS, "mti-digits-1") + "/status", {"status": {"active": 1}})
        no_node = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "mti-digits-1-xyz12",
                "namespace": NS,
                "labels": job["spec"]["template"]["metadata"]["labels"],
                "annotations": {"mutask.dev/taskintroduction": "digits-1"},
            },
            "status": {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": no_node,
                    }
                ],
            },
        }
        kube.create(core_path(NS, "pods"), pod)
        wait_for("Pending", lambda: phase(api, "digits-1") == "Pending")
        conds = {c["type"]: c for c in api.fake.get(TI_RES, NS, "digits-1")["status"]["conditions"]}
        assert conds["Pending"]["reason"] == "Unschedulable"
        assert no_node in conds["Pending"]["message"]
        wait_for("Unschedulable event", lambda: "Unschedulable" in events(api, "digits-1"))

        # a node fits (say the pool scaled up): the pod is placed and starts
        placed = {"type": "PodScheduled", "status": "True"}
        kube.merge_patch(
            core_path(NS, "pods", "mti-digits-1-xyz12"),
            {"status": {"phase": "Running", "conditions": [placed]}},
        )
        kube.merge_patch(
            job_path(NS, "mti-digits-1") + "/status", {"status": {"active": 1, "ready": 1}}
        )
        wait_for("Running", lambda: phase(api, "digits-1") == "Running")

    # operator restart while the Job runs: no second Job, state kept
    with operator() as runner2:
        time.sleep(1.5)
        assert [j["metadata"]["name"] for j in jobs(api)] == ["mti-digits-1"]
        assert phase(api, "digits-1") == "Running"

        # the trainer reports progress through /status (its own reporter, real HTTP)
        monkeypatch.setenv("MUTASK_TASKINTRODUCTION", f"{NS}/digits-1")
        reporter = KubeStatusReporter.from_env()
        assert reporter is not None
        reporter(
            {
                "generation": 1,
                "generations": 2,
                "candidates_trained": 2,
                "candidates_total": 4,
                "best_score": 0.91,
                "best_accuracy": 0.93,
                "accounted_params": 1200.0,
                "penalty": 0.02,
                "params_added": 5000,
                "checkpoint_uri": "file:///x/ckpt",
            }
        )
        progress = wait_for(
            "generation i/N",
            lambda: (
                (api.fake.get(TI_RES, NS, "digits-1") or {})
                .get("status", {})
                .get("generationProgress")
                == "1/2"
                and api.fake.get(TI_RES, NS, "digits-1")
            ),
        )["status"]
        assert progress["progress"]["bestScore"] == 0.91
        assert progress["progress"]["checkpointURI"] == "file:///x/ckpt"
        assert progress["phase"] == "Running"  # the trainer never touches conditions

        # a spot preemption: the pod fails with DisruptionTarget (ignored by podFailurePolicy)
        kube.create(
            core_path(NS, "pods"),
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {
                    "name": "mti-digits-1-abcde",
                    "namespace": NS,
                    "labels": job["spec"]["template"]["metadata"]["labels"],
                    "annotations": {"mutask.dev/taskintroduction": "digits-1"},
                },
                "status": {
                    "phase": "Failed",
                    "conditions": [
                        {
                            "type": "DisruptionTarget",
                            "status": "True",
                            "reason": "PreemptionByScheduler",
                        }
                    ],
                },
            },
        )
        wait_for(
            "preemption count",
            lambda: (
                (api.fake.get(TI_RES, NS, "digits-1") or {}).get("status", {}).get("preemptions")
                == 1
            ),
        )
        wait_for("Preempted event", lambda: "Preempted" in events(api, "digits-1"))

        # final progress and completion
        reporter(
            {
                "generation": 2,
                "generations": 2,
                "test_accuracy": 0.9,
                "no_forgetting_verified": True,
            }
        )
        kube.merge_patch(
            job_path(NS, "mti-digits-1") + "/status",
            {
                "status": {
                    "active": 0,
                    "succeeded": 1,
                    "conditions": [{"type": "Complete", "status": "True"}],
                }
            },
        )
        wait_for("Succeeded", lambda: phase(api, "digits-1") == "Succeeded")
        ti = api.fake.get(TI_RES, NS, "digits-1") or {}
        conds = {c["type"]: c for c in ti["status"]["conditions"]}
        assert conds["Succeeded"]["status"] == "True" and conds["Running"]["status"] == "False"
        assert conds["NoForgettingVerified"]["reason"] == "NoForgettingVerified"
        assert ti["status"]["completionTime"] and ti["status"]["observedGeneration"] == 1
        wait_for("Succeeded event", lambda: "Succeeded" in events(api, "digits-1"))
        system = wait_for(
            "system summary",
            lambda: (
                (api.fake.get(MTS_RES, NS, "vision") or {}).get("status", {}).get("taskCount") == 1
                and api.fake.get(MTS_RES, NS, "vision")
            ),
        )
        assert system["status"]["tasks"] == ["digits"]
        assert system["status"]["taskParams"]["digits"]["paramsAdded"] == 5000
    for r in (runner, runner2):
        assert r.exception is None, r.output[-3000:]
    assert len(jobs(api)) == 1


def test_queueing_suspend_failure_and_delete(
    cluster: tuple[RunningApi, Kube], tmp_path: Path
) -> None:
    api, kube = cluster
    uri = store(tmp_path)
    with operator() as runner:
        new_system(kube, uri, maxConcurrentIntroductions=2)
        wait_for(
            "system Ready",
            lambda: (api.fake.get(MTS_RES, NS, "vision") or {}).get("status", {}).get("conditions"),
        )
        new_intro(kube, "a-first", "cifar")
        wait_for("a admitted", lambda: phase(api, "a-first") == "Accepted")
        new_intro(kube, "b-second", "cifar")  # same task: must wait
        new_intro(kube, "c-other", "svhn")
        wait_for("b queued", lambda: phase(api, "b-second") == "Queued")
        wait_for("c admitted", lambda: phase(api, "c-other") == "Accepted")
        b = api.fake.get(TI_RES, NS, "b-second") or {}
        queued = {c["type"]: c for c in b["status"]["conditions"]}["Queued"]
        assert queued["reason"] == "Queued" and "a-first" in queued["message"]
        new_intro(kube, "d-third", "mnist")  # concurrency limit 2 reached
        wait_for("d queued", lambda: phase(api, "d-third") == "Queued")
        assert api.fake.get("batch/v1/jobs", NS, "mti-b-second") is None

        # suspend a: its Job is suspended; the slot goes to b (older than d)
        kube.merge_patch(ti_path(NS, "a-first"), {"spec": {"suspend": True}})
        wait_for("a suspended", lambda: phase(api, "a-first") == "Suspended")
        assert (api.fake.get("batch/v1/jobs", NS, "mti-a-first") or {})["spec"]["suspend"] is True
        wait_for("b admitted", lambda: phase(api, "b-second") == "Accepted")
        assert phase(api, "d-third") == "Queued"

        # c fails fast (bad input exit code -> podFailurePolicy FailJob)
        kube.merge_patch(
            job_path(NS, "mti-c-other") + "/status",
            {
                "status": {
                    "failed": 1,
                    "conditions": [
                        {
                            "type": "Failed",
                            "status": "True",
                            "reason": "PodFailurePolicy",
                            "message": "Container trainer for pod ml/x failed with exit code 2",
                        }
                    ],
                }
            },
        )
        wait_for("c failed", lambda: phase(api, "c-other") == "Failed")
        wait_for("d admitted after c failed", lambda: phase(api, "d-third") == "Accepted")
        warnings = [
            e
            for e in api.fake.all("v1/events")
            if e["involvedObject"]["name"] == "c-other" and e["type"] == "Warning"
        ]
        assert warnings and "exit code 2" in warnings[0]["message"]

        # resume a: same task as running b -> Queued, no new Job
        kube.merge_patch(ti_path(NS, "a-first"), {"spec": {"suspend": False}})
        wait_for("a queued behind b", lambda: phase(api, "a-first") == "Queued")

        # deleting b stops its Job (cascade) and never touches the store
        kube.delete(ti_path(NS, "b-second"))
        wait_for("b's Job gone", lambda: api.fake.get("batch/v1/jobs", NS, "mti-b-second") is None)
        assert api.fake.get("v1/configmaps", NS, "mti-b-second") is None
        assert (tmp_path / "store" / "root.json").exists()
        wait_for("a resumed", lambda: phase(api, "a-first") == "Accepted")
        assert (api.fake.get("batch/v1/jobs", NS, "mti-a-first") or {})["spec"]["suspend"] is False
        ti = api.fake.get(TI_RES, NS, "a-first") or {}
        assert "kopf.zalando.org/KopfFinalizerMarker" not in ti["metadata"].get("finalizers", [])
        assert not ti["metadata"].get("finalizers")
    assert runner.exception is None, runner.output[-3000:]


def test_bootstrap_then_admission(cluster: tuple[RunningApi, Kube], tmp_path: Path) -> None:
    api, kube = cluster
    with operator() as runner:
        new_system(
            kube,
            store(tmp_path, empty=True),
            rootModel={
                "preset": "mu-tiny",
                "bootstrap": {"task": "digits", "dataset": {"uri": "digits"}},
            },
        )
        job = wait_for(
            "bootstrap Job", lambda: api.fake.get("batch/v1/jobs", NS, "mti-vision-bootstrap")
        )
        assert job["metadata"]["ownerReferences"][0]["kind"] == "MultitaskSystem"
        cm = api.fake.get("v1/configmaps", NS, "mti-vision-bootstrap") or {}
        assert IntroduceConfig.from_json(cm["data"]["config.json"]).bootstrap_root is True
        new_intro(kube, "fashion", "fashion_mnist")
        # Queued at once; the reason converges to the bootstrap once kopf's index of systems
        # has the system's status (it may lag the status write by a watch event).
        wait_for("waiting for the root", lambda: phase(api, "fashion") == "Queued")
        wait_for("queued behind the bootstrap", lambda: "Bootstrapping" in queued(api, "fashion"))
        kube.merge_patch(
            job_path(NS, "mti-vision-bootstrap") + "/status",
            {"status": {"conditions": [{"type": "Complete", "status": "True"}]}},
        )
        wait_for(
            "admitted after bootstrap", lambda: phase(api, "fashion") == "Accepted", timeout=20
        )
    assert runner.exception is None, runner.output[-3000:]


def test_unreachable_storage_keeps_introductions_queued(
    cluster: tuple[RunningApi, Kube], tmp_path: Path
) -> None:
    api, kube = cluster
    with operator():
        new_system(kube, f"file://{tmp_path}/missing")
        new_intro(kube, "x", "digits")
        wait_for("queued", lambda: phase(api, "x") == "Queued")

        def ready() -> dict[str, str]:
            system = api.fake.get(MTS_RES, NS, "vision") or {}
            conditions = (system.get("status") or {}).get("conditions") or []
            return {c["type"]: c for c in conditions}.get("Ready") or {}

        # the system's own status lands on its own handler's schedule: wait, don't race it
        wait_for("system not ready", lambda: ready().get("reason") == "Unreachable")
        assert ready()["status"] == "False"
        assert not jobs(api)
    assert os.environ.get("KUBECONFIG")


def test_file_store_on_a_claim_is_checked_through_the_api(
    cluster: tuple[RunningApi, Kube], tmp_path: Path
) -> None:
    """The operator cannot see a claim-backed store: it waits for the claim, bootstraps once,
    and does not bootstrap again when the finished Job is cleaned up (TTL)."""
    api, kube = cluster

    def condition(kind: str) -> dict[str, str]:
        system = api.fake.get(MTS_RES, NS, "vision") or {}
        conditions = (system.get("status") or {}).get("conditions") or []
        return {c["type"]: c for c in conditions}.get(kind) or {}

    def ready() -> dict[str, str]:
        return condition("Ready")

    boot = "mti-vision-bootstrap"
    with operator() as runner:
        new_system(
            kube,
            f"file://{tmp_path}/not-mounted-here",
            storage={
                "uri": f"file://{tmp_path}/not-mounted-here",
                "persistentVolumeClaim": {"claimName": "vision-store"},
            },
            rootModel={
                "preset": "mu-tiny",
                "bootstrap": {"task": "digits", "dataset": {"uri": "digits"}},
            },
        )
        wait_for("claim missing", lambda: "vision-store not found" in ready().get("message", ""))
        assert ready()["reason"] == "Unreachable" and not jobs(api)
        kube.create(
            core_path(NS, "persistentvolumeclaims"),
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": "vision-store", "namespace": NS},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        )  # Pending, as with WaitForFirstConsumer until a pod mounts it
        job = wait_for("bootstrap Job", lambda: api.fake.get("batch/v1/jobs", NS, boot))
        volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
        assert volumes["store"]["persistentVolumeClaim"] == {"claimName": "vision-store"}
        kube.merge_patch(
            job_path(NS, boot) + "/status",
            {"status": {"conditions": [{"type": "Complete", "status": "True"}]}},
        )
        wait_for("ready", lambda: ready().get("status") == "True", timeout=20)
        kube.delete(job_path(NS, boot))  # ttlSecondsAfterFinished
        wait_for("Job gone", lambda: api.fake.get("batch/v1/jobs", NS, boot) is None)
        time.sleep(2.5)  # more than two system resyncs
        assert api.fake.get("batch/v1/jobs", NS, boot) is None
        assert ready()["status"] == "True"
        assert (
            "vision-store is Pending; the store on it holds the root"
            in (condition("StorageReachable")["message"])
        )
    assert runner.exception is None, runner.output[-3000:]
