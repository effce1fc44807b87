"""The chart lints, renders in every configuration, and renders valid objects with the
recommended labels, unique names and well-formed monitoring resources."""

from __future__ import annotations

import json
from typing import Any

import pytest
from chart_scenarios import CUSTOM_GROUPS, MONITORING, SCENARIOS
from chart_support import (
    CHART_DIR,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    Rendered,
    render,
    run_helm,
    write_values,
)


@pytest.mark.parametrize("name", ["default", "everything"])
def test_helm_lint_strict(helm: str, name: str) -> None:
    args = ["lint", "--strict", str(CHART_DIR), "--namespace", NAMESPACE]
    path = write_values(SCENARIOS[name]) if SCENARIOS[name] else None
    if path:
        args += ["--values", path]
    proc = run_helm(helm, *args, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 chart(s) failed" in proc.stdout


def test_manifests_validate_against_kubernetes_schemas(
    scenario: tuple[str, Rendered], kubernetes_validate: Any
) -> None:
    """Every built-in object is valid (strict: no unknown fields) for each supported version."""
    _, rendered = scenario
    errors = []
    for doc in rendered.docs:
        if doc["apiVersion"].startswith(CUSTOM_GROUPS):
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{doc['kind']}/{doc['metadata']['name']} @ {version}: {exc}")
    assert not errors, "\n".join(errors)


def test_every_object_has_recommended_labels(scenario: tuple[str, Rendered]) -> None:
    _, rendered = scenario
    for doc in rendered.docs:
        if doc["kind"] == "CustomResourceDefinition":
            continue  # copied verbatim from manifests/crds
        labels = doc["metadata"].get("labels", {})
        for key in (
            "app.kubernetes.io/name",
            "app.kubernetes.io/instance",
            "app.kubernetes.io/version",
            "app.kubernetes.io/managed-by",
            "app.kubernetes.io/part-of",
            "helm.sh/chart",
        ):
            assert key in labels, f"{doc['kind']}/{doc['metadata']['name']} lacks label {key}"
        assert labels["app.kubernetes.io/instance"] == RELEASE
        for value in labels.values():
            assert isinstance(value, str) and len(value) <= 63


def test_names_are_unique_and_dns_safe(scenario: tuple[str, Rendered]) -> None:
    _, rendered = scenario
    seen = set()
    for doc in rendered.docs:
        key = (
            doc["apiVersion"],
            doc["kind"],
            doc["metadata"].get("namespace"),
            doc["metadata"]["name"],
        )
        assert key not in seen, f"duplicate object {key}"
        seen.add(key)
        assert len(doc["metadata"]["name"]) <= 63


def test_monitoring_custom_resources_are_well_formed(scenario: tuple[str, Rendered]) -> None:
    """The monitoring.coreos.com objects use only fields of the Prometheus Operator's v1 API."""
    _, rendered = scenario
    endpoint_keys = {
        "port",
        "path",
        "interval",
        "scrapeTimeout",
        "relabelings",
        "metricRelabelings",
    }
    for sm in rendered.of_kind("ServiceMonitor"):
        assert sm["apiVersion"] == "monitoring.coreos.com/v1"
        assert set(sm["spec"]) <= {"namespaceSelector", "selector", "endpoints", "jobLabel"}
        for ep in sm["spec"]["endpoints"]:
            assert set(ep) <= endpoint_keys
    for pm in rendered.of_kind("PodMonitor"):
        assert pm["apiVersion"] == "monitoring.coreos.com/v1"
        assert set(pm["spec"]) <= {"namespaceSelector", "selector", "podMetricsEndpoints"}
        ns_sel = pm["spec"]["namespaceSelector"]
        assert set(ns_sel) in ({"any"}, {"matchNames"})
        for ep in pm["spec"]["podMetricsEndpoints"]:
            assert set(ep) <= endpoint_keys
    for pr in rendered.of_kind("PrometheusRule"):
        assert pr["apiVersion"] == "monitoring.coreos.com/v1"
        for group in pr["spec"]["groups"]:
            assert set(group) <= {"name", "interval", "rules"}
            for rule in group["rules"]:
                assert set(rule) <= {"alert", "record", "expr", "for", "labels", "annotations"}
                assert rule["labels"]["severity"] in {"critical", "warning", "info"}


def test_monitoring_is_off_by_default(helm: str) -> None:
    rendered = render(helm)
    for kind in ("ServiceMonitor", "PodMonitor", "PrometheusRule"):
        assert not rendered.has(kind)


def test_service_and_pod_monitors(helm: str) -> None:
    rendered = render(helm, MONITORING)
    sm = rendered.one("ServiceMonitor")
    svc = rendered.one("Service", f"{RELEASE}-metrics")
    assert sm["metadata"]["labels"]["release"] == "kps"
    assert sm["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    assert sm["spec"]["endpoints"][0]["port"] == svc["spec"]["ports"][0]["name"] == "metrics"
    pm = rendered.one("PodMonitor")
    # The labels mutask.operator.objects.common_labels puts on trainer pods.
    assert pm["spec"]["selector"] == {
        "matchLabels": {
            "app.kubernetes.io/component": "trainer",
            "app.kubernetes.io/managed-by": "mutask-operator",
        }
    }
    assert pm["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    assert pm["spec"]["namespaceSelector"] == {"any": True}
    # The operator's pods are not trainer pods.
    op_labels = rendered.one("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert op_labels["app.kubernetes.io/component"] == "operator"
    pr = rendered.one("PrometheusRule")
    alerts = {r["alert"]: r for g in pr["spec"]["groups"] for r in g["rules"]}
    assert {
        "MutaskOperatorDown",
        "MutaskReconcileErrors",
        "MutaskIntroductionsFailing",
        "MutaskTrainerStalled",
    } <= set(alerts)
    assert all(a["labels"]["team"] == "ml" for a in alerts.values())
    assert f'job="{RELEASE}-metrics"' in alerts["MutaskOperatorDown"]["expr"]


def test_dashboard_configmap(helm: str) -> None:
    rendered = render(helm)
    cm = rendered.one("ConfigMap", f"{RELEASE}-dashboard", NAMESPACE)
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    on_disk = json.loads((CHART_DIR / "dashboards" / "mutask.json").read_text())
    assert json.loads(cm["data"]["mutask.json"]) == on_disk
    moved = render(helm, SCENARIOS["everything"]).one("ConfigMap", f"{RELEASE}-dashboard")
    assert moved["metadata"]["namespace"] == "monitoring"
    assert moved["metadata"]["annotations"]["grafana_folder"] == "ML"
    off = render(helm, {"grafana": {"dashboard": {"enabled": False}}})
    assert not off.of_kind("ConfigMap")
