"""``helm upgrade`` with a changed CRD, then ``helm uninstall``, as docs/deploy.md tells a user:
Helm installs CRDs but never upgrades or deletes them, so the documented
``kubectl apply --server-side -f charts/mutask/crds/`` is what brings a changed CRD in."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from controlplane import ControlPlane
from helm_release import CHART, Helm
from scenario import intro

RELEASE, NS = "up", "mutask-upgrade"
CRD = "taskintroductions.mutask.dev"


def columns(cp: ControlPlane) -> list[str]:
    crd = cp.get("crd", CRD)
    assert crd is not None
    return [c["name"] for c in crd["spec"]["versions"][0]["additionalPrinterColumns"]]


@pytest.fixture
def changed_chart(cp: ControlPlane, tmp_path: Path) -> Iterator[Path]:
    """A copy of the chart whose TaskIntroduction CRD prints one more column (Job)."""
    chart = tmp_path / "mutask"
    shutil.copytree(CHART, chart)
    path = chart / "crds" / f"mutask.dev_{CRD.split('.')[0]}.yaml"
    crd = yaml.safe_load(path.read_text())
    crd["spec"]["versions"][0]["additionalPrinterColumns"].append(
        {"name": "Job", "type": "string", "jsonPath": ".status.jobName"}
    )
    path.write_text(yaml.safe_dump(crd, sort_keys=False))
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    meta["version"] = "0.1.1"
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    yield chart
    # Put the session's CRDs back as the chart has them.
    cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))


def test_upgrade_with_a_changed_crd_then_uninstall(
    cp: ControlPlane, helm: Helm, chart: dict[str, Any], changed_chart: Path
) -> None:
    original = columns(cp)
    helm("install", RELEASE, str(CHART), "-n", NS, "--create-namespace", "--wait")
    ti = intro("kept", NS, "vision")
    cp.apply([ti])

    helm(
        "upgrade", RELEASE, str(changed_chart), "-n", NS, "--wait", "--set", "operator.verbose=true"
    )
    (release,) = json.loads(helm("list", "-n", NS, "-o", "json").stdout)
    assert (release["revision"], release["chart"]) == ("2", "mutask-0.1.1"), release
    deployment = cp.get("deployment", f"{RELEASE}-mutask-operator", NS)
    assert deployment is not None
    args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--verbose" in args  # the values change rolled out
    assert columns(cp) == original  # Helm leaves CRDs alone on upgrade ...

    cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(changed_chart / "crds"))
    assert columns(cp) == [*original, "Job"]  # ... the documented kubectl apply brings it in
    printed = cp.kubectl("get", "ti", "kept", "-n", NS).stdout
    assert printed.splitlines()[0].split()[-1] == "JOB"  # the existing object still serves

    helm("uninstall", RELEASE, "-n", NS, "--wait")
    assert cp.get("deployment", f"{RELEASE}-mutask-operator", NS) is None
    assert cp.get("clusterrole", f"{RELEASE}-mutask-operator") is None
    assert cp.get("serviceaccount", f"{RELEASE}-mutask-trainer", NS) is None
    assert cp.get("crd", CRD) is not None  # CRDs and the custom resources outlive the release
    assert cp.get("taskintroductions", "kept", NS) is not None
    cp.kubectl("delete", "namespace", NS, "--wait=false")
