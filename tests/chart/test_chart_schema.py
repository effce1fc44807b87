"""values.schema.json is strict: bad values fail `helm template` naming the field."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
import yaml
from chart_support import CHART_DIR, helm_template

SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())
DEFAULTS = yaml.safe_load((CHART_DIR / "values.yaml").read_text())

# (values, the JSON pointer helm must name, a fragment of the reason)
BAD_VALUES: dict[str, tuple[dict[str, Any], str, str]] = {
    "unknown-top-level-key": ({"operatorr": {}}, "''", "operatorr"),
    "unknown-nested-key": ({"operator": {"replicas": 1}}, "/operator", "replicas"),
    "negative-replicas": ({"operator": {"replicaCount": -1}}, "/operator/replicaCount", "minimum"),
    "ha-without-peering": ({"operator": {"replicaCount": 3}}, "/operator/peering/enabled", "true"),
    "port-out-of-range": ({"operator": {"metricsPort": 70000}}, "/operator/metricsPort", "maximum"),
    "port-as-string": ({"operator": {"livenessPort": "8081"}}, "/operator/livenessPort", "integer"),
    "bad-namespace": (
        {"operator": {"watchNamespaces": ["Team_A"]}},
        "/operator/watchNamespaces/0",
        "pattern",
    ),
    "duplicate-namespace": (
        {"operator": {"watchNamespaces": ["a", "a"]}},
        "/operator/watchNamespaces",
        "equal",
    ),
    "bad-pull-policy": (
        {"operator": {"image": {"pullPolicy": "Sometimes"}}},
        "/operator/image/pullPolicy",
        "one of",
    ),
    "bad-digest": (
        {"operator": {"image": {"digest": "latest"}}},
        "/operator/image/digest",
        "pattern",
    ),
    "verbose-as-string": ({"operator": {"verbose": "yes"}}, "/operator/verbose", "boolean"),
    "root-trainer": ({"trainer": {"runAsUser": 0}}, "/trainer/runAsUser", "minimum"),
    "bad-gcp-service-account": (
        {"trainer": {"workloadIdentity": {"gcpServiceAccount": "bob"}}},
        "/trainer/workloadIdentity/gcpServiceAccount",
        "pattern",
    ),
    "toggle-as-string": (
        {"metrics": {"serviceMonitor": {"enabled": "yes"}}},
        "/metrics/serviceMonitor/enabled",
        "boolean",
    ),
    "bad-duration": (
        {"metrics": {"podMonitor": {"interval": "30 seconds"}}},
        "/metrics/podMonitor/interval",
        "pattern",
    ),
    "negative-threshold": (
        {"metrics": {"prometheusRule": {"reconcileErrorsThreshold": -1}}},
        "/metrics/prometheusRule/reconcileErrorsThreshold",
        "minimum",
    ),
    "bad-failed-condition": (
        {"metrics": {"prometheusRule": {"failedCondition": 'x"}'}}},
        "/metrics/prometheusRule/failedCondition",
        "pattern",
    ),
    "label-value-not-string": ({"commonLabels": {"tier": 1}}, "/commonLabels/tier", "string"),
}


def test_schema_is_valid_draft7() -> None:
    jsonschema.Draft7Validator.check_schema(SCHEMA)


def test_default_values_match_schema() -> None:
    jsonschema.Draft7Validator(SCHEMA).validate(DEFAULTS)


def _keys(node: Any, prefix: str = "") -> set[str]:
    if not isinstance(node, dict):
        return set()
    out = set()
    for k, v in node.items():
        out.add(prefix + k)
        out |= _keys(v, prefix + k + ".")
    return out


def _schema_keys(node: dict[str, Any], prefix: str = "") -> set[str]:
    out = set()
    for k, v in node.get("properties", {}).items():
        out.add(prefix + k)
        out |= _schema_keys(v, prefix + k + ".")
    return out


def test_every_value_is_in_the_schema() -> None:
    """values.yaml and the schema describe the same keys (except free-form maps)."""
    missing = {
        k
        for k in _keys(DEFAULTS) - _schema_keys(SCHEMA)
        # Free-form maps whose keys are the user's: resources, security contexts, selectors.
        if not k.startswith(
            (
                "operator.resources.",
                "operator.podSecurityContext.",
                "operator.securityContext.",
                "metrics.podMonitor.selector.",
                "serving.resources.",
                "serving.podSecurityContext.",
                "serving.securityContext.",
            )
        )
    }
    assert not missing, f"values.yaml keys missing from values.schema.json: {sorted(missing)}"


@pytest.mark.parametrize("case", sorted(BAD_VALUES))
def test_bad_values_are_rejected(helm: str, case: str) -> None:
    values, pointer, reason = BAD_VALUES[case]
    proc = helm_template(helm, values, check=False)
    assert proc.returncode != 0, f"helm accepted {values}"
    err = proc.stderr
    assert "values don't meet the specifications of the schema" in err, err
    assert f"at {pointer}" in err or f"at '{pointer}'" in err, err
    assert reason in err, err


def test_good_non_default_values_are_accepted(helm: str) -> None:
    values = {
        "operator": {"replicaCount": 0, "watchNamespaces": ["a", "b"], "verbose": True},
        "trainer": {
            "workloadIdentity": {"gcpServiceAccount": "trainer-1@proj-123.iam.gserviceaccount.com"}
        },
        "metrics": {
            "podMonitor": {"interval": "1m30s"},
            "prometheusRule": {"reconcileErrorsThreshold": 0.5},
        },
    }
    helm_template(helm, values)


def test_empty_pod_monitor_selector_is_rejected(helm: str) -> None:
    """null deletes a default key in helm (after schema validation): the template refuses."""
    values = {
        "metrics": {
            "podMonitor": {
                "enabled": True,
                "selector": {
                    "app.kubernetes.io/component": None,
                    "app.kubernetes.io/managed-by": None,
                },
            }
        }
    }
    proc = helm_template(helm, values, check=False)
    assert proc.returncode != 0
    assert "metrics.podMonitor.selector must not be empty" in proc.stderr
