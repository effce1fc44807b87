"""Pure builder: (MultitaskSystem, TaskIntroduction) specs + settings -> the trainer Job.

Covers GKE TPU and GPU node selection, spot VMs, Kueue, Workload Identity (the trainer
ServiceAccount), the restricted Pod Security Standard, owner references and the
``podFailurePolicy`` that separates preemptions (free retries) from bad input (fail fast).
No API calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from mutask import contract
from mutask.operator import api
from mutask.operator.objects import common_labels, job_name, owner_reference
from mutask.operator.settings import Settings
from mutask.operator.spec import Accelerator, IntroductionSpec, SystemSpec

STORE_VOLUME = "store"
XLA_CACHE_VOLUME = "xla-cache"
XLA_CACHE_DIR = "/var/cache/mutask/xla"  # XLA's persistent compilation cache in TPU pods


def pod_failure_policy() -> dict[str, Any]:
    """Fail fast on bad input (2) and fencing (3); ignore disruptions and code 75 (preempted)."""
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {
                    "containerName": contract.CONTAINER_NAME,
                    "operator": "In",
                    "values": [int(contract.ExitCode.BAD_INPUT), int(contract.ExitCode.FENCED)],
                },
            },
            {
                "action": "Ignore",
                "onExitCodes": {
                    "containerName": contract.CONTAINER_NAME,
                    "operator": "In",
                    "values": [int(contract.ExitCode.PREEMPTED)],
                },
            },
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]
    }


def placement(
    accel: Accelerator,
) -> tuple[dict[str, str], list[dict[str, Any]], dict[str, Any]]:
    """(nodeSelector, tolerations, extra device resources) for an accelerator."""
    selector: dict[str, str] = {}
    tolerations: list[dict[str, Any]] = []
    devices: dict[str, Any] = {}
    if accel.type == "gpu":
        selector[api.GKE_ACCELERATOR] = str(accel.gpu_type)
        devices[api.GPU_RESOURCE] = accel.gpu_count
        tolerations.append({"key": api.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    elif accel.type == "tpu":
        selector[api.GKE_TPU_ACCELERATOR] = str(accel.tpu_accelerator)
        selector[api.GKE_TPU_TOPOLOGY] = str(accel.tpu_topology)
        devices[api.TPU_RESOURCE] = accel.tpu_chips
        tolerations.append({"key": api.TPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    if accel.spot:
        selector[api.GKE_SPOT] = "true"
        tolerations.append(
            {"key": api.GKE_SPOT, "operator": "Equal", "value": "true", "effect": "NoSchedule"}
        )
    return selector, tolerations, devices


def container_resources(
    intro: IntroductionSpec, settings: Settings, devices: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """Requests/limits: settings defaults, then the introduction's, then device counts."""
    requests: dict[str, Any] = {"cpu": settings.cpu_request, "memory": settings.memory_request}
    limits: dict[str, Any] = {"memory": settings.memory_limit}
    requests.update(intro.resources.get("requests") or {})
    limits.update(intro.resources.get("limits") or {})
    for key, count in devices.items():
        requests[key] = count
        limits[key] = count
    return {"requests": requests, "limits": limits}


def store_volume(system: SystemSpec) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(volume, volumeMount) of a ``file://`` store's PersistentVolumeClaim, mounted at the path.

    Every trainer pod of the system (bootstrap and introductions) mounts the same claim, so the
    root one Job publishes is visible to the next. ``gs://`` stores need no volume (None).
    """
    parsed = urlparse(system.storage_uri)
    if parsed.scheme != "file" or not system.claim_name:
        return None
    path = parsed.path.rstrip("/") or "/"
    return (
        {"name": STORE_VOLUME, "persistentVolumeClaim": {"claimName": system.claim_name}},
        {"name": STORE_VOLUME, "mountPath": path},
    )


def build_job(
    system: SystemSpec, intro: IntroductionSpec, settings: Settings, *, bootstrap_root: bool = False
) -> dict[str, Any]:
    """The trainer Job of ``intro`` (or of the system's root bootstrap)."""
    name = job_name(intro.ref.name)
    namespace = intro.ref.namespace
    system_name = system.ref.name
    task = intro.task
    accel = system.accelerator_of(intro)
    selector, tolerations, devices = placement(accel)
    queue = intro.queue_name

    labels = common_labels(system_name, task, intro.ref.name)
    labels.update(settings.extra_labels)
    job_labels = dict(labels)
    if queue:
        job_labels[api.LABEL_KUEUE_QUEUE] = str(queue)

    env: list[dict[str, Any]] = [
        {"name": "MUTASK_MULTITASKSYSTEM", "value": f"{namespace}/{system_name}"},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        {"name": "HOME", "value": "/tmp"},
        {  # the trainer sizes its CPU candidate workers to the request (rounded up)
            "name": contract.ENV_CPU_REQUEST,
            "valueFrom": {
                "resourceFieldRef": {
                    "containerName": contract.CONTAINER_NAME,
                    "resource": "requests.cpu",
                    "divisor": "1",
                }
            },
        },
    ]
    if not bootstrap_root:
        env.insert(0, {"name": contract.ENV_INTRODUCTION, "value": f"{namespace}/{intro.ref.name}"})
    if accel.type == "tpu":
        env.append({"name": "PJRT_DEVICE", "value": "TPU"})
        env.append({"name": contract.ENV_XLA_CACHE, "value": XLA_CACHE_DIR})

    mounts = [
        {"name": "config", "mountPath": contract.CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": name}},
        {"name": "tmp", "emptyDir": {}},
    ]
    if accel.type == "tpu":  # shared by the pod's per-chip workers and container restarts
        mounts.append({"name": XLA_CACHE_VOLUME, "mountPath": XLA_CACHE_DIR})
        volumes.append({"name": XLA_CACHE_VOLUME, "emptyDir": {}})
    if accel.type in ("gpu", "tpu"):
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
    store = store_volume(system)
    if store is not None:
        volumes.append(store[0])
        mounts.append(store[1])

    container: dict[str, Any] = {
        "name": contract.CONTAINER_NAME,
        "image": intro.image or settings.image_for(accel.type),
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["mutask"],
        "args": [
            "introduce",
            "--config",
            f"{contract.CONFIG_DIR}/{contract.CONFIG_FILE}",
            "--metrics-port",
            str(settings.trainer_metrics_port),
        ],
        "env": env,
        "ports": [{"name": "metrics", "containerPort": settings.trainer_metrics_port}],
        "resources": container_resources(intro, settings, devices),
        "volumeMounts": mounts,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        },
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": settings.trainer_service_account,
        "terminationGracePeriodSeconds": settings.termination_grace_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "runAsGroup": settings.run_as_user,
            "fsGroup": settings.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if selector:
        pod_spec["nodeSelector"] = selector
    if tolerations:
        pod_spec["tolerations"] = tolerations

    owner = system.ref if bootstrap_root else intro.ref
    annotations = {api.ANNOTATION_TASK: task}
    if not bootstrap_root:
        annotations[api.LABEL_INTRODUCTION] = intro.ref.name
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": job_labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference(owner)],
        },
        "spec": {
            # Kueue admits a queued Job by unsuspending it; otherwise follow spec.suspend.
            "suspend": bool(queue) or intro.suspend,
            "backoffLimit": settings.backoff_limit,
            "completions": 1,
            "parallelism": 1,
            "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
            "podFailurePolicy": pod_failure_policy(),
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        **annotations,
                        "kubectl.kubernetes.io/default-container": contract.CONTAINER_NAME,
                    },
                },
                "spec": pod_spec,
            },
        },
    }
