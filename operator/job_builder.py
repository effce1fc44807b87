"""Pure builder: (MultitaskSystem, TaskIntroduction, settings) -> the trainer ``batch/v1`` Job.

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
from mutask.operator.config_builder import _sub, resolve_accelerator
from mutask.operator.objects import Obj, common_labels, job_name, meta, owner_reference, spec
from mutask.operator.settings import OperatorSettings

STORE_VOLUME = "store"


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
    accel: Mapping[str, Any],
) -> tuple[dict[str, str], list[dict[str, Any]], dict[str, Any]]:
    """(nodeSelector, tolerations, extra device resources) for an accelerator block."""
    selector: dict[str, str] = {}
    tolerations: list[dict[str, Any]] = []
    devices: dict[str, Any] = {}
    kind = accel.get("type", "cpu")
    if kind == "gpu":
        gpu = _sub(accel, "gpu")
        selector[api.GKE_ACCELERATOR] = str(gpu.get("type"))
        devices[api.GPU_RESOURCE] = int(gpu.get("count", 1))
        tolerations.append({"key": api.GPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    elif kind == "tpu":
        tpu = _sub(accel, "tpu")
        selector[api.GKE_TPU_ACCELERATOR] = str(tpu.get("accelerator"))
        selector[api.GKE_TPU_TOPOLOGY] = str(tpu.get("topology"))
        devices[api.TPU_RESOURCE] = int(tpu.get("chips", 4))
        tolerations.append({"key": api.TPU_RESOURCE, "operator": "Exists", "effect": "NoSchedule"})
    if accel.get("spot"):
        selector[api.GKE_SPOT] = "true"
        tolerations.append(
            {"key": api.GKE_SPOT, "operator": "Equal", "value": "true", "effect": "NoSchedule"}
        )
    return selector, tolerations, devices


def container_resources(
    intro: Obj, settings: OperatorSettings, devices: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """Requests/limits: settings defaults, then the introduction's, then device counts."""
    own = _sub(spec(intro), "resources")
    requests: dict[str, Any] = {"cpu": settings.cpu_request, "memory": settings.memory_request}
    limits: dict[str, Any] = {"memory": settings.memory_limit}
    requests.update(_sub(own, "requests"))
    limits.update(_sub(own, "limits"))
    for key, count in devices.items():
        requests[key] = count
        limits[key] = count
    return {"requests": requests, "limits": limits}


def store_volume(system: Obj) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(volume, volumeMount) of a ``file://`` store's PersistentVolumeClaim, mounted at the path.

    Every trainer pod of the system (bootstrap and introductions) mounts the same claim, so the
    root one Job publishes is visible to the next. ``gs://`` stores need no volume (None).
    """
    storage = _sub(spec(system), "storage")
    parsed = urlparse(str(storage.get("uri", "")))
    claim = _sub(storage, "persistentVolumeClaim").get("claimName")
    if parsed.scheme != "file" or not claim:
        return None
    path = parsed.path.rstrip("/") or "/"
    return (
        {"name": STORE_VOLUME, "persistentVolumeClaim": {"claimName": str(claim)}},
        {"name": STORE_VOLUME, "mountPath": path},
    )


def build_job(
    system: Obj, intro: Obj, settings: OperatorSettings, *, bootstrap_root: bool = False
) -> dict[str, Any]:
    """The trainer Job of ``intro`` (or of the system's root bootstrap)."""
    m, i_spec = meta(intro), spec(intro)
    name = job_name(str(m.get("name")))
    namespace = m.get("namespace")
    system_name = str(meta(system).get("name"))
    task = str(i_spec.get("task", ""))
    accel = resolve_accelerator(system, intro)
    selector, tolerations, devices = placement(accel)
    queue = i_spec.get("queueName")

    labels = common_labels(system_name, task, str(m.get("name")))
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
        env.insert(0, {"name": contract.ENV_INTRODUCTION, "value": f"{namespace}/{m.get('name')}"})
    if accel.get("type") == "tpu":
        env.append({"name": "PJRT_DEVICE", "value": "TPU"})

    mounts = [
        {"name": "config", "mountPath": contract.CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": name}},
        {"name": "tmp", "emptyDir": {}},
    ]
    if accel.get("type") in ("gpu", "tpu"):
        mounts.append({"name": "dshm", "mountPath": "/dev/shm"})
        volumes.append({"name": "dshm", "emptyDir": {"medium": "Memory"}})
    store = store_volume(system)
    if store is not None:
        volumes.append(store[0])
        mounts.append(store[1])

    container: dict[str, Any] = {
        "name": contract.CONTAINER_NAME,
        "image": i_spec.get("image") or settings.image_for(str(accel.get("type", "cpu"))),
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["mutask"],
        "args": [
            "introduce",
            "--config",
            f"{contract.CONFIG_DIR}/{contract.CONFIG_FILE}",
            "--metrics-port",
            str(settings.metrics_port),
        ],
        "env": env,
        "ports": [{"name": "metrics", "containerPort": settings.metrics_port}],
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

    owner = system if bootstrap_root else intro
    annotations = {api.ANNOTATION_TASK: task}
    if not bootstrap_root:
        annotations[api.LABEL_INTRODUCTION] = str(m.get("name"))
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
            "suspend": bool(queue) or bool(i_spec.get("suspend", False)),
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
