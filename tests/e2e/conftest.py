"""Real-cluster (kind/GKE) fixtures: skipped unless a reachable cluster is configured."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def _kubeconfig() -> str | None:
    explicit = os.environ.get("MUTASK_E2E_KUBECONFIG")
    if explicit:
        return explicit
    return os.environ.get("KUBECONFIG")


def cluster_reason() -> str | None:
    """None when a cluster is reachable, else why the e2e suite is skipped."""
    config = _kubeconfig()
    if not config:
        return (
            "no real cluster: set MUTASK_E2E_KUBECONFIG (or KUBECONFIG) to a kind/GKE cluster "
            "(tests/e2e/kind.sh creates one); no kube-apiserver can be installed here"
        )
    if shutil.which("kubectl") is None:
        return "kubectl not found"
    probe = subprocess.run(
        ["kubectl", "--kubeconfig", config, "version", "--request-timeout=5s"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        return f"cluster in {config} not reachable: {probe.stderr.strip()[:200]}"
    return None


@pytest.fixture(scope="session")
def kubeconfig() -> str:
    reason = cluster_reason()
    if reason:
        pytest.skip(reason)
    config = _kubeconfig()
    assert config
    return config
