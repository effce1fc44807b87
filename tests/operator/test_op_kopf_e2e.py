"""End to end, queueing, suspension, failure, deletion,
bootstrap, storage checks: the real operator (``mutask operator``, in-process) against a
Kubernetes API stand-in on 127.0.0.1 (kmock 0.8 + fixes, see op_fakeapi). Job progress,
completion, failure and disruption are simulated by patching Job status / creating Pods."""

from __future__ import annotations

import os
import time
from pathlib import Path

from op_fakeapi import RunningApi
from op_kopf_support import (
    MTS_RES,
    NS,
    TI_RES,
    jobs,
    new_intro,
    new_system,
    operator,
    phase,
    queued,
    store,
    wait_for,
)

from mutask.operator.kube import Kube, core_path, job_path, ti_path
from mutask.trainer.config import IntroduceConfig


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
        wait_for("admitted after bootstrap", lambda: phase(api, "fashion") == "Accepted")
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
        wait_for("ready", lambda: ready().get("status") == "True")
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
