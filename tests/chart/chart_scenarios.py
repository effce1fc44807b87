"""The chart's render scenarios shared by tests/chart/test_chart_*.py: values for each
configuration a user installs, the module-scoped ``scenario`` fixture that renders each one, and
readers for the operator's container."""

from __future__ import annotations

from typing import Any

import pytest
from chart_support import Rendered, render

WI_GSA = "mutask-trainer@my-project.iam.gserviceaccount.com"


MONITORING = {
    "metrics": {
        "serviceMonitor": {"enabled": True, "additionalLabels": {"release": "kps"}},
        "podMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True, "alertLabels": {"team": "ml"}},
    }
}


SCENARIOS: dict[str, dict[str, Any]] = {
    "default": {},
    "monitoring": MONITORING,
    "namespaced": {"operator": {"watchNamespaces": ["team-a", "team-b"]}},
    "workload-identity": {"trainer": {"workloadIdentity": {"gcpServiceAccount": WI_GSA}}},
    "peering-ha": {"operator": {"replicaCount": 2, "peering": {"enabled": True}}},
    "everything": {
        **MONITORING,
        "commonLabels": {"cost-center": "research"},
        "imagePullSecrets": [{"name": "regcred"}],
        "operator": {
            "watchNamespaces": ["team-a"],
            "peering": {"enabled": True, "priority": 10},
            "image": {"digest": "sha256:" + "a" * 64},
            "verbose": True,
            "extraEnv": [{"name": "FOO", "value": "bar"}],
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
            "priorityClassName": "system-cluster-critical",
        },
        "trainer": {
            "image": {"repository": "europe-docker.pkg.dev/p/r/trainer", "tag": "1.2.3"},
            "namespaces": ["team-a", "team-c"],
            "workloadIdentity": {"gcpServiceAccount": WI_GSA},
            "serviceAccount": {"annotations": {"example.com/owner": "ml"}},
        },
        "grafana": {"dashboard": {"namespace": "monitoring", "folder": "ML"}},
    },
}


CUSTOM_GROUPS = ("monitoring.coreos.com/", "kopf.dev/", "mutask.dev/")


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def scenario(request: pytest.FixtureRequest, helm: str) -> tuple[str, Rendered]:
    return request.param, render(helm, SCENARIOS[request.param])


def containers(rendered: Rendered) -> list[dict[str, Any]]:
    dep = rendered.one("Deployment")
    result: list[dict[str, Any]] = dep["spec"]["template"]["spec"]["containers"]
    return result


def operator_args(rendered: Rendered) -> list[str]:
    args: list[str] = containers(rendered)[0]["args"]
    return args
