"""Building blocks of the scenarios: mutask objects, a file:// store on a claim, waits on the
TaskIntroduction phase, its Job and pods, and ending a simulated pod with an exit code."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from controlplane import ControlPlane, wait_for

from mutask import contract
from mutask.operator import api

JOB_LABEL = "batch.kubernetes.io/job-name"


def system(name: str, namespace: str, claim: str, store: Path, **spec: Any) -> dict[str, Any]:
    """A MultitaskSystem on a ``file://`` store held by PersistentVolumeClaim ``claim``."""
    return {
        "apiVersion": contract.API_VERSION,
        "kind": contract.MTS_KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "storage": {"uri": f"file://{store}", "persistentVolumeClaim": {"claimName": claim}},
            "rootModel": {"preset": "mu-tiny", "imageSize": 8},
            **spec,
        },
    }


def store_claim(namespace: str, claim: str, path: Path) -> list[dict[str, Any]]:
    """A hostPath PersistentVolume at ``path`` and the claim that binds to it (the real PV
    controller binds them; the local kubelet mounts the hostPath)."""
    path.mkdir(parents=True, exist_ok=True)
    pv = f"{namespace}-{claim}"
    return [
        {
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": ["ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "hostPath": {"path": str(path)},
                "claimRef": {"namespace": namespace, "name": claim},
            },
        },
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": claim, "namespace": namespace},
            "spec": {
                "accessModes": ["ReadWriteMany"],
                "storageClassName": "",
                "volumeName": pv,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    ]


def intro(name: str, namespace: str, system_name: str, **spec: Any) -> dict[str, Any]:
    """A small TaskIntroduction (digits, 1 generation x 2 candidates) on ``system_name``."""
    base: dict[str, Any] = {
        "systemRef": {"name": system_name},
        "task": "digits",
        "dataset": {"uri": "digits", "trainSplit": "train[:90%]", "validationSplit": "train[90%:]"},
        "budget": {
            "generations": 1,
            "candidatesPerGeneration": 2,
            "validationRounds": 1,
            "stepsPerRound": 2,
            "batchSize": 16,
        },
        "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        "seed": 1,
    }
    base.update(spec)
    return {
        "apiVersion": contract.API_VERSION,
        "kind": contract.TI_KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": base,
    }


def ti(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    obj = cp.get(contract.TI_PLURAL, name, namespace)
    assert obj is not None, f"TaskIntroduction {namespace}/{name} is gone"
    return obj


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return dict(cond)
    return None


def wait_phase(
    cp: ControlPlane, namespace: str, name: str, *phases: str, timeout: float = 90
) -> dict[str, Any]:
    """Wait until the introduction's ``status.phase`` is one of ``phases``; return it."""

    def probe() -> dict[str, Any] | None:
        obj = ti(cp, namespace, name)
        return obj if (obj.get("status") or {}).get("phase") in phases else None

    try:
        return wait_for(f"{namespace}/{name} phase in {phases}", probe, timeout)
    except TimeoutError as err:
        status = (cp.get(contract.TI_PLURAL, name, namespace) or {}).get("status")
        raise AssertionError(f"{err}; status: {status}") from err


def jobs(cp: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    return cp.list("jobs", namespace)


def job_of(cp: ControlPlane, namespace: str, name: str, timeout: float = 60) -> dict[str, Any]:
    """The trainer Job of introduction ``name`` (named in its status.jobName)."""

    def probe() -> dict[str, Any] | None:
        job_name = (ti(cp, namespace, name).get("status") or {}).get("jobName")
        return cp.get("job", job_name, namespace) if job_name else None

    return wait_for(f"the Job of {namespace}/{name}", probe, timeout)


def pods_of(cp: ControlPlane, namespace: str, job_name: str) -> list[dict[str, Any]]:
    return cp.list("pods", namespace, f"{JOB_LABEL}={job_name}")


def running_pod(
    cp: ControlPlane, namespace: str, job_name: str, timeout: float = 60
) -> dict[str, Any]:
    """The (first) Running pod of the Job, not already asked to end."""

    def probe() -> dict[str, Any] | None:
        for pod in pods_of(cp, namespace, job_name):
            ann = pod["metadata"].get("annotations") or {}
            if pod["status"].get("phase") == "Running" and EXIT_CODE not in ann:
                return pod
        return None

    return wait_for(f"a Running pod of Job {namespace}/{job_name}", probe, timeout)


EXIT_CODE = "kwok.mutask.dev/exit-code"
DISRUPTION = "kwok.mutask.dev/disruption"


def end_pod(
    cp: ControlPlane, pod: dict[str, Any], exit_code: int, disruption: str | None = None
) -> None:
    """Make kwok end ``pod``'s container with ``exit_code`` (stage pod-exit in kwok-stages.yaml),
    with the DisruptionTarget condition (reason ``disruption``) when given."""
    meta = pod["metadata"]
    notes = [f"{EXIT_CODE}={exit_code}"] + ([f"{DISRUPTION}={disruption}"] if disruption else [])
    cp.kubectl("annotate", "pod", meta["name"], "-n", meta["namespace"], *notes)


def ready_system(cp: ControlPlane, ns: str, tmp_path: Path) -> str:
    cp.apply(store_claim(ns, "store", tmp_path / "store"))
    cp.apply([system("vision", ns, "store", tmp_path / "store")])

    def is_ready() -> bool:
        obj = cp.get("multitasksystems", "vision", ns) or {}
        return (condition(obj, api.READY) or {}).get("status") == "True"

    wait_for("MultitaskSystem vision Ready", is_ready, 60)
    return "vision"


def store_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return h.hexdigest()
