"""The chart's crds/ are byte-identical copies of manifests/crds/ (the source of truth)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import yaml
from chart_support import CHART_DIR, REPO_ROOT, render

SOURCE = REPO_ROOT / "manifests" / "crds"
CHART_CRDS = CHART_DIR / "crds"
FIX = "re-sync with: bash charts/sync-crds.sh"


def _names(folder: Any) -> set[str]:
    return {p.name for p in folder.glob("*.yaml")} if folder.is_dir() else set()


def test_chart_crds_are_copies_of_manifests() -> None:
    source, chart = _names(SOURCE), _names(CHART_CRDS)
    assert source - chart == set(), f"CRDs missing from the chart: {sorted(source - chart)}; {FIX}"
    assert chart - source == set(), f"chart CRDs without a source: {sorted(chart - source)}; {FIX}"
    differing = [
        n for n in sorted(source) if (SOURCE / n).read_bytes() != (CHART_CRDS / n).read_bytes()
    ]
    assert not differing, f"chart CRDs differ from manifests/crds: {differing}; {FIX}"


def test_rbac_is_generated_from_its_one_source() -> None:
    """charts/mutask/templates/_rbac_rules.tpl and manifests/operator/rbac.yaml are what
    charts/sync-rbac.py generates from charts/rbac-rules.yaml."""
    root = SOURCE.parents[1]
    done = subprocess.run(
        [sys.executable, str(root / "charts" / "sync-rbac.py"), "--check"],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_chart_crds_are_valid(kubernetes_validate: Any) -> None:
    from chart_support import KUBE_VERSIONS

    for path in sorted(CHART_CRDS.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc:
                continue
            assert doc["kind"] == "CustomResourceDefinition", path.name
            assert doc["spec"]["group"] == "mutask.dev", path.name
            for version in KUBE_VERSIONS:
                kubernetes_validate.validate(doc, version, strict=True)


def test_rendered_crds_are_the_files(helm: str) -> None:
    """`helm template --include-crds` emits exactly the CRDs in crds/."""
    expected = sorted(
        doc["metadata"]["name"]
        for p in CHART_CRDS.glob("*.yaml")
        for doc in yaml.safe_load_all(p.read_text())
        if doc
    )
    rendered = sorted(
        d["metadata"]["name"] for d in render(helm).of_kind("CustomResourceDefinition")
    )
    assert rendered == expected
