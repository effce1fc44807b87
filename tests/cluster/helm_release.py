"""The chart under test and its release names, and ``helm`` bound to the test control plane."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from controlplane import REPO, ClusterError, ControlPlane

CHART = REPO / "charts" / "mutask"
RELEASE = "mutask"
RELEASE_NS = "mutask-system"
OPERATOR_SA = "mutask-operator"
TRAINER_SA = "mutask-trainer"


def find_helm() -> str:
    """$HELM, helm on PATH, or .cache/tools/helm/helm (installed by .ci/install-tools.sh)."""
    for candidate in (
        os.environ.get("HELM"),
        shutil.which("helm"),
        REPO / ".cache/tools/helm/helm",
    ):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    subprocess.run(["bash", str(REPO / ".ci" / "install-tools.sh"), "helm"], check=True, cwd="/")
    return str(REPO / ".cache/tools/helm/helm")


class Helm:
    def __init__(self, cp: ControlPlane) -> None:
        self.cp, self.bin = cp, find_helm()

    def __call__(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.bin, "--kubeconfig", str(self.cp.admin.kubeconfig), *args],
            capture_output=True,
            text=True,
            env=self.cp.env,
        )
        if check and proc.returncode != 0:
            raise ClusterError(f"helm {' '.join(args)}: {proc.stderr.strip()}")
        return proc
