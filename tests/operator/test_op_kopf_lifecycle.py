"""End to end, an introduction's lifecycle (progress,
preemption, operator restart): the real operator (``mutask operator``, in-process) against a
Kubernetes API stand-in on 127.0.0.1 (kmock 0.8 + fixes, see op_fakeapi). Job progress,
completion, failure and disruption are simulated by patching Job status / creating Pods."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from op_fakeapi import RunningApi
from op_kopf_support import (
    MTS_RES,
    NS,
    TI_RES,
    events,
    jobs,
    new_intro,
    new_system,
    operator,
    phase,
    store,
    wait_for,
)

from mutask.operator.kube import Kube, core_path, job_path
from mutask.trainer.config import IntroduceConfig
from mutask.trainer.runtime.kube_status import KubeStatusReporter


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
