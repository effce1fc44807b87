"""Pure builder: a multi-host introduction's JobSet (``jobset.x-k8s.io/v1alpha2``).

One replicated Job (``host``, one replica) of ``hosts`` Indexed pods, one per TPU host or GPU
node, each the single-host trainer pod of :func:`~mutask.operator.job_builder.build_job` plus
where it stands among the hosts (``contract.ENV_HOST_INDEX`` from its completion index,
``ENV_HOSTS``, and ``ENV_ATTEMPT``: the JobSet's uid and restart attempt, the same on every host
of one start of the set). JobSet adds the headless Service (pods resolve as
``<jobset>-host-0-<index>.<jobset>``; the lead's address is in the
``jobset.sigs.k8s.io/coordinator`` annotation) and, on TPU and GPU, exclusive placement: the
set takes a node pool (a TPU slice is one pool) to itself. CPU nodes (``cpu.nodes``) are shared
with other work, so a CPU set is placed like any pods.

Failures, as for the single-host Job, but for the whole set: bad input (exit 2) and fencing
(exit 3) fail the JobSet at once; a preemption (exit 75, or a pod with the DisruptionTarget
condition) restarts the whole set without counting; any other failure of a host (a crash, a
lost node) restarts the whole set, at most ``backoffLimit`` times. Each pod's Job fails on the
first failed pod (``backoffLimit: 0``) so that JobSet sees it; the ``podFailurePolicy`` rule
that failed it is named in the Job's failure message, which the JobSet rules match.
No API calls.
"""

from __future__ import annotations

from typing import Any

from mutask import contract
from mutask.operator.job_builder import build_job
from mutask.operator.objects import child_name, job_name
from mutask.operator.settings import Settings
from mutask.operator.spec import IntroductionSpec, SystemSpec
from mutask.operator.topology import TopologyError

API_VERSION = "jobset.x-k8s.io/v1alpha2"
KIND = "JobSet"
REPLICATED_JOB = "host"
EXCLUSIVE = "alpha.jobset.sigs.k8s.io/exclusive-topology"
NODE_POOL = "cloud.google.com/gke-nodepool"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
JOBSET_UID = "jobset.sigs.k8s.io/jobset-uid"
RESTART_ATTEMPT = "jobset.sigs.k8s.io/restart-attempt"

# The podFailurePolicy rules of each host's Job, in order; their index is in the Job's failure
# message ("... matching FailJob rule at index N"), which the JobSet's failure policy reads.
BAD_INPUT_RULE, PREEMPTED_RULE, DISRUPTED_RULE = 0, 1, 2


def jobset_name(introduction_name: str) -> str:
    """The JobSet of an introduction: ``mti-<name>`` (hashed when long), short enough that
    JobSet's longest pod name ``<name>-host-0-<index>-xxxxx`` stays a DNS label."""
    return child_name("mti", introduction_name, limit=45)


def hosts_of(intro: IntroductionSpec, system: SystemSpec) -> int:
    """Hosts of the introduction's accelerator (raises TopologyError naming the field)."""
    where = "spec.accelerator"
    if intro.accelerator is None:  # the system's default
        where = f"MultitaskSystem {system.ref.name} spec.defaults.accelerator"
    return system.accelerator_of(intro).hosts(where)


def workload_name(intro: IntroductionSpec, system: SystemSpec | None) -> tuple[str, str]:
    """(kind, name) of the introduction's trainer workload: a Job, or a JobSet for several
    hosts (a shape the operator refuses counts as one host: no JobSet is made for it)."""
    try:
        hosts = hosts_of(intro, system) if system is not None else 1
    except TopologyError:
        hosts = 1
    if hosts > 1:
        return KIND, jobset_name(intro.ref.name)
    return "Job", job_name(intro.ref.name)


def host_pod_failure_policy() -> dict[str, Any]:
    """Every failure ends the host's Job at once, named by the rule that matched."""
    bad = [int(contract.ExitCode.BAD_INPUT), int(contract.ExitCode.FENCED)]
    preempted = [int(contract.ExitCode.PREEMPTED)]
    on_exit = {"containerName": contract.CONTAINER_NAME, "operator": "In"}
    rules: list[dict[str, Any]] = [{}, {}, {}]
    rules[BAD_INPUT_RULE] = {"action": "FailJob", "onExitCodes": {**on_exit, "values": bad}}
    rules[PREEMPTED_RULE] = {"action": "FailJob", "onExitCodes": {**on_exit, "values": preempted}}
    rules[DISRUPTED_RULE] = {"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget"}]}
    return {"rules": rules}


def failure_policy(settings: Settings) -> dict[str, Any]:
    """The JobSet's: bad input fails it, a preemption restarts it for free, anything else
    restarts it at most ``backoffLimit`` times (JobSet's default action, RestartJobSet)."""
    return {
        "maxRestarts": settings.backoff_limit,
        "restartStrategy": "Recreate",
        "rules": [
            {
                "name": "BadInput",
                "action": "FailJobSet",
                "onJobFailureReasons": ["PodFailurePolicy"],
                "onJobFailureMessagePatterns": [
                    f"matching FailJob rule at index {BAD_INPUT_RULE}$"
                ],
            },
            {
                "name": "Preempted",
                "action": "RestartJobSetAndIgnoreMaxRestarts",
                "onJobFailureReasons": ["PodFailurePolicy"],
            },
        ],
    }


def host_env(hosts: int) -> list[dict[str, Any]]:
    """Where a pod stands among the hosts (see the module doc)."""

    def annotation(key: str) -> dict[str, Any]:
        return {"fieldRef": {"fieldPath": f"metadata.annotations['{key}']"}}

    return [
        {"name": contract.ENV_HOST_INDEX, "valueFrom": annotation(COMPLETION_INDEX)},
        {"name": contract.ENV_HOSTS, "value": str(hosts)},
        {"name": "MUTASK_JOBSET_UID", "valueFrom": annotation(JOBSET_UID)},
        {"name": "MUTASK_JOBSET_RESTART", "valueFrom": annotation(RESTART_ATTEMPT)},
        {"name": contract.ENV_ATTEMPT, "value": "$(MUTASK_JOBSET_UID).$(MUTASK_JOBSET_RESTART)"},
    ]


def build_jobset(
    system: SystemSpec,
    intro: IntroductionSpec,
    settings: Settings,
    hosts: int,
    *,
    bootstrap_root: bool = False,
) -> dict[str, Any]:
    """The trainer JobSet of a multi-host ``intro`` (``hosts`` > 1), or of the system's root
    bootstrap on a multi-host default accelerator (owned by the system, as its Job would be)."""
    job = build_job(system, intro, settings, bootstrap_root=bootstrap_root)
    name = jobset_name(intro.ref.name)
    exclusive = {} if system.accelerator_of(intro).type == "cpu" else {EXCLUSIVE: NODE_POOL}
    template = job["spec"]["template"]
    (container,) = template["spec"]["containers"]
    container["env"] = [*container["env"], *host_env(hosts)]
    host_job = {
        "completionMode": "Indexed",
        "completions": hosts,
        "parallelism": hosts,
        "backoffLimit": 0,
        "podFailurePolicy": host_pod_failure_policy(),
        "template": template,
    }
    meta = job["metadata"]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": name,
            "namespace": meta["namespace"],
            "labels": meta["labels"],  # with Kueue's queue-name label when queued
            "annotations": {**meta["annotations"], **exclusive},
            "ownerReferences": meta["ownerReferences"],
        },
        "spec": {
            # Kueue admits a queued JobSet by unsuspending it; otherwise follow spec.suspend.
            "suspend": job["spec"]["suspend"],
            "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
            "network": {"enableDNSHostnames": True, "publishNotReadyAddresses": True},
            "coordinator": {"replicatedJob": REPLICATED_JOB, "jobIndex": 0, "podIndex": 0},
            "failurePolicy": failure_policy(settings),
            "replicatedJobs": [
                {
                    "name": REPLICATED_JOB,
                    "replicas": 1,
                    "template": {
                        "metadata": {
                            "labels": dict(template["metadata"]["labels"]),
                            "annotations": dict(meta["annotations"]),
                        },
                        "spec": host_job,
                    },
                }
            ],
        },
    }
