"""The chart's optional serving (`mutask serve`): Deployment, Service, ServiceMonitor and HPA
render valid objects, off by default; bad values fail with the field's name; the server's
metrics are exactly the serving part of the metric contract the dashboard is checked against."""

from __future__ import annotations

from typing import Any

import pytest
from chart_support import (
    CHART_DIR,
    KUBE_VERSIONS,
    NAMESPACE,
    RELEASE,
    SERVING_METRICS,
    helm_template,
    render,
    run_helm,
    write_values,
)
from prometheus_client.parser import text_string_to_metric_families

SERVING = f"{RELEASE}-serving"  # the release name contains the chart name
GCS = {"serving": {"enabled": True, "store": "gs://bucket/systems/vision"}}
FULL = {
    "serving": {
        "enabled": True,
        "store": "file:///var/lib/mutask/store",
        "storeVolume": {"persistentVolumeClaim": {"claimName": "tiny-store"}},
        "image": {"variant": "cuda", "tag": "1.2.3"},
        "device": "cuda",
        "maxBatch": 32,
        "serviceAccountName": "mutask-trainer",
        "resources": {
            "requests": {"cpu": "2", "memory": "2Gi", "nvidia.com/gpu": "1"},
            "limits": {"memory": "4Gi", "nvidia.com/gpu": "1"},
        },
        "serviceMonitor": {"enabled": True, "additionalLabels": {"release": "kps"}},
        "autoscaling": {
            "enabled": True,
            "minReplicas": 2,
            "maxReplicas": 6,
            "targetMemoryUtilizationPercentage": 80,
        },
        "extraArgs": ["--access-log"],
        "nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-l4"},
    }
}


def serving_docs(values: dict[str, Any] | None, helm: str) -> list[dict[str, Any]]:
    rendered = render(helm, values)
    return [
        d
        for d in rendered.docs
        if d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "serving"
    ]


def test_serving_is_off_by_default(helm: str) -> None:
    assert serving_docs(None, helm) == []


def test_serving_renders_deployment_and_service(helm: str) -> None:
    docs = {d["kind"]: d for d in serving_docs(GCS, helm)}
    assert set(docs) == {"Deployment", "Service"}
    pod = docs["Deployment"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/mutask/trainer:0.1.0-cpu"
    assert container["args"][:4] == [
        "serve",
        "--store=gs://bucket/systems/vision",
        "--host=0.0.0.0",
        "--port=8080",
    ]
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    service = docs["Service"]
    assert service["metadata"]["name"] == SERVING
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    selector = service["spec"]["selector"]
    assert selector.items() <= docs["Deployment"]["spec"]["template"]["metadata"]["labels"].items()


def test_serving_with_everything(helm: str, kubernetes_validate: Any) -> None:
    docs = {d["kind"]: d for d in serving_docs(FULL, helm)}
    assert set(docs) == {"Deployment", "Service", "ServiceMonitor", "HorizontalPodAutoscaler"}
    dep = docs["Deployment"]
    assert "replicas" not in dep["spec"], "the HPA owns the replica count"
    pod = dep["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/mutask/trainer:1.2.3-cuda"
    assert "--device=cuda" in container["args"] and "--access-log" in container["args"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "store")
    assert mount == {"name": "store", "mountPath": "/var/lib/mutask/store", "readOnly": True}
    volume = next(v for v in pod["volumes"] if v["name"] == "store")
    assert volume["persistentVolumeClaim"] == {"claimName": "tiny-store"}
    assert pod["serviceAccountName"] == "mutask-trainer"
    hpa = docs["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == SERVING
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 6)
    assert {m["resource"]["name"] for m in hpa["metrics"]} == {"cpu", "memory"}
    monitor = docs["ServiceMonitor"]["spec"]
    assert monitor["endpoints"][0] == {
        "port": "http",
        "path": "/metrics",
        "interval": "30s",
        "scrapeTimeout": "10s",
    }
    assert docs["ServiceMonitor"]["metadata"]["labels"]["release"] == "kps"
    errors = []
    for doc in docs.values():
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                errors.append(f"{doc['kind']} @ {version}: {exc}")
    assert not errors, "\n".join(errors)


def test_helm_lint_strict_with_serving(helm: str) -> None:
    path = write_values(FULL)
    proc = run_helm(
        helm,
        "lint",
        "--strict",
        str(CHART_DIR),
        "--namespace",
        NAMESPACE,
        "--values",
        path,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ({"serving": {"enabled": True}}, "serving.store"),
        ({"serving": {"enabled": True, "store": "s3://x"}}, "store"),
        ({"serving": {"enabled": True, "store": "gs://b", "port": 0}}, "port"),
        ({"serving": {"enabled": True, "store": "gs://b", "image": {"variant": "tpu"}}}, "variant"),
        ({"serving": {"enabled": True, "store": "gs://b", "maxBach": 8}}, "maxBach"),
        ({"serving": {"enabled": True, "store": "gs://b", "device": "xla"}}, "device"),
        (
            {
                "serving": {
                    "enabled": True,
                    "store": "gs://b",
                    "resources": {"requests": None},
                    "autoscaling": {"enabled": True},
                }
            },
            "resources.requests",
        ),
        (
            {
                "serving": {
                    "enabled": True,
                    "store": "gs://b",
                    "autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2},
                }
            },
            "minReplicas",
        ),
    ],
)
def test_bad_serving_values_fail_naming_the_field(
    helm: str, values: dict[str, Any], words: str
) -> None:
    proc = helm_template(helm, values, check=False)
    assert proc.returncode != 0
    assert words in proc.stderr, proc.stderr


def test_server_exposes_exactly_the_serving_metric_contract() -> None:
    from mutask.trainer.serving.metrics import ServingMetrics

    metrics = ServingMetrics()
    metrics.request("t", 200, 0.01)
    metrics.reloads.labels("loaded").inc()
    metrics.version.labels("t").set(1)
    families = {
        f.name: f.type
        for f in text_string_to_metric_families(metrics.exposition().decode())
        if not f.name.endswith("_created")  # prometheus_client's creation timestamps
    }
    contract = {name.removesuffix("_total"): kind for name, kind in SERVING_METRICS.items()}
    assert families == contract
