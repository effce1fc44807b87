"""The multi-host JobSet builder: one Indexed Job of one pod per host, the hosts' environment,
exclusive placement, Kueue, and a failure policy that restarts the set on a lost host and never
on bad input (checked against the Job controller's own failure messages)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from op_samples import INTRO, SYSTEM, merged

from mutask import contract
from mutask.operator import api
from mutask.operator.jobset_builder import (
    BAD_INPUT_RULE,
    DISRUPTED_RULE,
    PREEMPTED_RULE,
    build_jobset,
    jobset_name,
)
from mutask.operator.settings import Settings
from mutask.operator.spec import bootstrap_introduction, parse_introduction, parse_system

S = Settings()
V5E_4X4 = {
    "type": "tpu",
    "tpu": {"accelerator": "tpu-v5-lite-podslice", "topology": "4x4", "chips": 4},
}
L4_X3 = {"type": "gpu", "gpu": {"type": "nvidia-l4", "count": 2, "nodes": 3}}


def build(accel: dict[str, Any], hosts: int, **spec: Any) -> dict[str, Any]:
    intro = parse_introduction(merged(INTRO, accelerator=accel, **spec))
    system = parse_system(SYSTEM)
    assert system.accelerator_of(intro).hosts() == hosts
    return build_jobset(system, intro, S, hosts)


def host_job(js: dict[str, Any]) -> dict[str, Any]:
    (rjob,) = js["spec"]["replicatedJobs"]
    assert rjob["name"] == "host" and rjob["replicas"] == 1
    spec: dict[str, Any] = rjob["template"]["spec"]
    return spec


def env(js: dict[str, Any]) -> dict[str, dict[str, Any]]:
    (container,) = host_job(js)["template"]["spec"]["containers"]
    return {e["name"]: e for e in container["env"]}


def test_one_indexed_pod_per_tpu_host() -> None:
    js = build(V5E_4X4, 4)
    assert (js["apiVersion"], js["kind"]) == ("jobset.x-k8s.io/v1alpha2", "JobSet")
    assert js["metadata"]["name"] == "mti-digits-1"
    job = host_job(js)
    assert job["completionMode"] == "Indexed"
    assert job["completions"] == job["parallelism"] == 4
    assert job["backoffLimit"] == 0
    pod = job["template"]["spec"]
    assert pod["nodeSelector"] == {
        api.GKE_TPU_ACCELERATOR: "tpu-v5-lite-podslice",
        api.GKE_TPU_TOPOLOGY: "4x4",
    }
    (container,) = pod["containers"]
    assert container["resources"]["limits"][api.TPU_RESOURCE] == 4
    assert pod["volumes"][0]["configMap"]["name"] == "mti-digits-1"  # the one ConfigMap
    assert js["metadata"]["annotations"]["alpha.jobset.sigs.k8s.io/exclusive-topology"] == (
        "cloud.google.com/gke-nodepool"
    )
    assert js["spec"]["network"]["enableDNSHostnames"] is True
    assert js["spec"]["coordinator"] == {"replicatedJob": "host", "jobIndex": 0, "podIndex": 0}
    (owner,) = js["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["uid"]) == (contract.TI_KIND, "digits-1", "ti-uid")
    # the operator finds the introduction from the set, its Jobs and its pods
    for meta in (js["metadata"], host_job(js)["template"]["metadata"]):
        assert meta["annotations"][api.LABEL_INTRODUCTION] == "digits-1"
    assert (
        js["spec"]["replicatedJobs"][0]["template"]["metadata"]["annotations"][
            api.LABEL_INTRODUCTION
        ]
        == "digits-1"
    )


def test_cpu_nodes_share_their_pool() -> None:
    js = build({"type": "cpu", "cpu": {"nodes": 2}}, 2)
    assert host_job(js)["completions"] == 2
    assert "alpha.jobset.sigs.k8s.io/exclusive-topology" not in js["metadata"]["annotations"]
    assert "nodeSelector" not in host_job(js)["template"]["spec"]


def test_gpu_nodes() -> None:
    job = host_job(build(L4_X3, 3))
    assert job["completions"] == 3
    (container,) = job["template"]["spec"]["containers"]
    assert container["resources"]["limits"][api.GPU_RESOURCE] == 2
    assert job["template"]["spec"]["nodeSelector"] == {api.GKE_ACCELERATOR: "nvidia-l4"}


def test_each_host_knows_its_place() -> None:
    e = env(build(V5E_4X4, 4))
    index = e[contract.ENV_HOST_INDEX]["valueFrom"]["fieldRef"]["fieldPath"]
    assert index == "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    assert e[contract.ENV_HOSTS]["value"] == "4"
    names = list(e)
    attempt = e[contract.ENV_ATTEMPT]["value"]
    for ref in re.findall(r"\$\((\w+)\)", attempt):  # defined before use, as the kubelet needs
        assert names.index(ref) < names.index(contract.ENV_ATTEMPT)
        assert "jobset.sigs.k8s.io/" in e[ref]["valueFrom"]["fieldRef"]["fieldPath"]
    assert e["PJRT_DEVICE"]["value"] == "TPU"


@pytest.mark.parametrize(("queue", "suspend"), [(None, False), ("team", True)])
def test_kueue_label_and_suspend(queue: str | None, suspend: bool) -> None:
    js = build(V5E_4X4, 4, **({"queueName": queue} if queue else {}))
    assert js["spec"]["suspend"] is suspend
    assert js["metadata"]["labels"].get(api.LABEL_KUEUE_QUEUE) == queue
    assert build(V5E_4X4, 4, suspend=True)["spec"]["suspend"] is True


def _job_failure(rule: int, exit_code: int | None) -> str:
    """The Job controller's failure message for a podFailurePolicy FailJob rule (v1.36)."""
    if exit_code is None:
        return f"Pod ns/p-0 has condition DisruptionTarget matching FailJob rule at index {rule}"
    return (
        f"Container trainer for pod ns/p-0 failed with exit code {exit_code} "
        f"matching FailJob rule at index {rule}"
    )


def _action(js: dict[str, Any], reason: str, message: str) -> str:
    """The JobSet failure-policy action for a Job failure (first matching rule, else the
    default RestartJobSet)."""
    for rule in js["spec"]["failurePolicy"]["rules"]:
        reasons, patterns = rule.get("onJobFailureReasons"), rule.get("onJobFailureMessagePatterns")
        if reasons and reason not in reasons:
            continue
        if patterns and not any(re.search(p, message) for p in patterns):
            continue
        return str(rule["action"])
    return "RestartJobSet"


def _matching_rule(js: dict[str, Any], exit_code: int | None) -> int | None:
    rules = host_job(js)["podFailurePolicy"]["rules"]
    for i, rule in enumerate(rules):
        on_exit = rule.get("onExitCodes")
        if exit_code is not None and on_exit and exit_code in on_exit["values"]:
            return i
        if exit_code is None and rule.get("onPodConditions"):
            return i
    return None


@pytest.mark.parametrize(
    ("exit_code", "action"),
    [
        (contract.ExitCode.BAD_INPUT, "FailJobSet"),
        (contract.ExitCode.FENCED, "FailJobSet"),
        (contract.ExitCode.PREEMPTED, "RestartJobSetAndIgnoreMaxRestarts"),
        (None, "RestartJobSetAndIgnoreMaxRestarts"),  # DisruptionTarget (spot, eviction)
        (contract.ExitCode.FAILED, "RestartJobSet"),  # a crashed or lost host
        (137, "RestartJobSet"),  # killed
    ],
)
def test_failure_policy(exit_code: int | None, action: str) -> None:
    js = build(V5E_4X4, 4)
    rule = _matching_rule(js, exit_code)
    if rule is None:  # no podFailurePolicy rule: backoffLimit 0 fails the Job
        reason, message = "BackoffLimitExceeded", "Job has reached the specified backoff limit"
    else:
        reason, message = "PodFailurePolicy", _job_failure(rule, exit_code)
        assert rule == (
            BAD_INPUT_RULE
            if action == "FailJobSet"
            else (DISRUPTED_RULE if exit_code is None else PREEMPTED_RULE)
        )
    assert _action(js, reason, message) == action
    assert js["spec"]["failurePolicy"]["maxRestarts"] == S.backoff_limit


def test_long_names_keep_jobset_pod_names_dns_labels() -> None:
    name = "a-very-long-introduction-name-" + "x" * 30
    js_name = jobset_name(name)
    longest_pod = f"{js_name}-host-0-1535-abcde"  # JobSet's own check (v5p 16x16x24)
    assert len(longest_pod) <= 63 and js_name.startswith("mti-")
    assert jobset_name("digits-1") == "mti-digits-1"


def test_a_multi_host_root_bootstrap_belongs_to_the_system() -> None:
    defaults = {**SYSTEM["spec"]["defaults"], "accelerator": V5E_4X4}
    boot = {"task": "digits", "dataset": {"uri": "digits"}}
    system = parse_system(merged(SYSTEM, defaults=defaults, rootModel={"bootstrap": boot}))
    js = build_jobset(system, bootstrap_introduction(system), S, 4, bootstrap_root=True)
    (owner,) = js["metadata"]["ownerReferences"]
    assert owner["kind"] == contract.MTS_KIND
    assert contract.ENV_INTRODUCTION not in env(js)
    assert contract.ENV_HOSTS in env(js)
    for meta in (js["metadata"], js["spec"]["replicatedJobs"][0]["template"]["metadata"]):
        assert api.LABEL_INTRODUCTION not in meta["annotations"]
