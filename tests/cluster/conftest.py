"""Fixtures of the real-control-plane scenarios (see controlplane.py for what runs).

One control plane (with the simulated GKE pools) and one ``helm install`` of charts/mutask serve
the whole session; each test gets its own namespace (with the chart's trainer ServiceAccount
and Role rendered into it) and starts its own operator process when it needs one.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "operator"))  # op_crd_cases, op_samples

from controllers import WebhookController, jobset  # noqa: E402
from controlplane import SCRIPT, ControlPlane, Identity  # noqa: E402
from gke_pools import POOLS  # noqa: E402
from helm_release import CHART, OPERATOR_SA, RELEASE, RELEASE_NS, Helm  # noqa: E402
from kubelet import LocalKubelet  # noqa: E402
from operator_proc import OperatorProcess  # noqa: E402

# Operator settings for tests: resync every second instead of every 30 (no waiting in tests).
FAST = {"MUTASK_RESYNC_SECONDS": "1", "MUTASK_SYSTEM_RESYNC_SECONDS": "1"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test here runs on the control plane: ``-m "not cluster"`` skips them all."""
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    plane = ControlPlane(tmp_path_factory.mktemp("controlplane"))
    try:
        plane.start()
        plane.apply(node for pool in POOLS for node in pool.nodes())
        yield plane
    finally:
        plane.stop()


def share_dir() -> Path:
    """The controllers' CRDs and webhook manifests kept by .ci/controlplane.sh."""
    out = subprocess.run(["bash", str(SCRIPT), "share-dir"], capture_output=True, text=True)
    return Path(out.stdout.strip())


@pytest.fixture(scope="session")
def jobset_controller(
    cp: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[WebhookController]:
    """JobSet's controller (built from sigs.k8s.io/jobset) with its CRD and webhooks, for the
    session: multi-host introductions run as JobSets (see controllers.jobset)."""
    controller = jobset(cp, tmp_path_factory.mktemp("jobset"), share_dir() / "jobset")
    controller.start()
    yield controller
    controller.stop()


@pytest.fixture(scope="session")
def helm(cp: ControlPlane) -> Helm:
    return Helm(cp)


@pytest.fixture(scope="session")
def chart(cp: ControlPlane, helm: Helm) -> dict[str, Any]:
    """``helm install`` of charts/mutask (waits until the operator Deployment is available)."""
    helm(
        "install",
        RELEASE,
        str(CHART),
        "-n",
        RELEASE_NS,
        "--create-namespace",
        "--wait",
        "--timeout",
        "3m",
    )
    deployment = cp.get("deployment", f"{RELEASE}-operator", RELEASE_NS)
    assert deployment is not None
    return deployment


@pytest.fixture(scope="session")
def operator_identity(cp: ControlPlane, chart: dict[str, Any]) -> Identity:
    return cp.token_identity(RELEASE_NS, OPERATOR_SA)


@pytest.fixture
def namespace(
    cp: ControlPlane, helm: Helm, chart: dict[str, Any], request: pytest.FixtureRequest
) -> Iterator[str]:
    """A fresh namespace holding the chart's trainer ServiceAccount, Role and RoleBinding."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower())[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:5]}"  # a DNS label
    cp.kubectl("create", "namespace", name)
    rbac = helm(
        "template",
        RELEASE,
        str(CHART),
        "-n",
        RELEASE_NS,
        "--show-only",
        "templates/trainer-rbac.yaml",
        "--set",
        f"trainer.namespaces={{{name}}}",
    ).stdout
    cp.apply(rbac)
    yield name
    cp.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def start_operator(
    cp: ControlPlane, chart: dict[str, Any], operator_identity: Identity, tmp_path: Path
) -> Iterator[Callable[..., OperatorProcess]]:
    """``start_operator(**env)``: the chart's operator as a local process (stopped at the end,
    and the test fails if the apiserver denied it anything: its RBAC must grant every verb)."""
    started: list[OperatorProcess] = []
    mark = cp.audit_mark()

    def start(**env: str) -> OperatorProcess:
        proc = OperatorProcess(
            cp, operator_identity, chart, tmp_path / f"operator-{len(started)}", {**FAST, **env}
        )
        started.append(proc)
        return proc.start()

    yield start
    for proc in started:
        proc.stop()
    denied = cp.denied(operator_identity.user, since=mark)
    assert not denied, f"the apiserver denied the operator: {denied}"


@pytest.fixture
def kubelet(cp: ControlPlane, tmp_path: Path) -> Iterator[Callable[..., LocalKubelet]]:
    """``kubelet(node_name, labels=...)``: a local-process kubelet for one node (see kubelet.py)."""
    started: list[LocalKubelet] = []

    def start(node_name: str, **kwargs: Any) -> LocalKubelet:
        k = LocalKubelet(cp, node_name, tmp_path / node_name, **kwargs)
        started.append(k)
        return k.start()

    yield start
    for k in started:
        k.stop()
