"""Real-cluster end to end: CRDs installed, operator running (kind.sh or the Helm chart), a CPU
TaskIntroduction on digits (1 generation, 2 candidates) reaches Succeeded.

Skipped unless MUTASK_E2E_KUBECONFIG (or KUBECONFIG with a reachable cluster) is set.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]
NS = os.environ.get("MUTASK_E2E_NAMESPACE", "mutask")
TIMEOUT = float(os.environ.get("MUTASK_E2E_TIMEOUT", "900"))


def kubectl(kubeconfig: str, *args: str, input: str | None = None) -> str:
    out = subprocess.run(
        ["kubectl", "--kubeconfig", kubeconfig, *args],
        capture_output=True,
        text=True,
        input=input,
        check=True,
    )
    return out.stdout


def test_crds_established(kubeconfig: str) -> None:
    for name in ("multitasksystems.mutask.dev", "taskintroductions.mutask.dev"):
        crd = json.loads(kubectl(kubeconfig, "get", "crd", name, "-o", "json"))
        conds = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conds.get("Established") == "True"


def test_cel_rule_rejects_gpu_without_block(kubeconfig: str) -> None:
    bad = {
        "apiVersion": "mutask.dev/v1alpha1",
        "kind": "TaskIntroduction",
        "metadata": {"name": "e2e-bad", "namespace": NS},
        "spec": {
            "systemRef": {"name": "tiny"},
            "task": "digits",
            "dataset": {"uri": "digits"},
            "accelerator": {"type": "gpu"},
        },
    }
    with pytest.raises(subprocess.CalledProcessError) as err:
        kubectl(kubeconfig, "apply", "--dry-run=server", "-f", "-", input=json.dumps(bad))
    assert "spec.accelerator.gpu is required" in err.value.stderr


def test_cpu_introduction_succeeds(kubeconfig: str) -> None:
    kubectl(kubeconfig, "apply", "-f", str(ROOT / "manifests/samples/store-pvc.yaml"))
    kubectl(
        kubeconfig, "apply", "-f", str(ROOT / "manifests/samples/multitasksystem-bootstrap.yaml")
    )
    kubectl(kubeconfig, "apply", "-f", str(ROOT / "manifests/samples/taskintroduction-cpu.yaml"))
    deadline = time.monotonic() + TIMEOUT
    phase = None
    while time.monotonic() < deadline:
        ti = json.loads(kubectl(kubeconfig, "-n", NS, "get", "ti", "digits-cpu", "-o", "json"))
        phase = ti.get("status", {}).get("phase")
        if phase in ("Succeeded", "Failed"):
            break
        time.sleep(5)
    assert phase == "Succeeded", json.dumps(ti.get("status"), indent=1)
    assert ti["status"]["progress"]["generation"] == 1
    jobs = json.loads(
        kubectl(
            kubeconfig,
            "-n",
            NS,
            "get",
            "jobs",
            "-l",
            "mutask.dev/taskintroduction=digits-cpu",
            "-o",
            "json",
        )
    )
    assert len(jobs["items"]) == 1
