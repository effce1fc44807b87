"""Invalid TaskIntroductions and MultitaskSystems and the field each rejection must name.

Shared by the offline CRD tests (tests/operator/test_op_crds.py: schema + CEL evaluated here)
and the real-apiserver tests (tests/cluster/test_cluster_crds.py): both must reject every case.
"""

from __future__ import annotations

import copy
from typing import Any


def ti(**spec: Any) -> dict[str, Any]:
    base = {
        "apiVersion": "mutask.dev/v1alpha1",
        "kind": "TaskIntroduction",
        "metadata": {"name": "x", "namespace": "ns"},
        "spec": {"systemRef": {"name": "s"}, "task": "digits", "dataset": {"uri": "digits"}},
    }
    base["spec"].update(copy.deepcopy(spec))
    return base


BAD_TI = [
    ("gpu-without-block", {"accelerator": {"type": "gpu"}}, "spec.accelerator.gpu is required"),
    (
        "tpu-without-topology",
        {"accelerator": {"type": "tpu", "tpu": {"accelerator": "tpu-v5-lite-podslice"}}},
        "spec.accelerator.tpu.accelerator and spec.accelerator.tpu.topology are required",
    ),
    (
        "gpu-block-on-cpu",
        {"accelerator": {"type": "cpu", "gpu": {"type": "nvidia-l4"}}},
        "spec.accelerator.gpu is only allowed",
    ),
    (
        "tpu-block-on-gpu",
        {"accelerator": {"type": "gpu", "gpu": {"type": "nvidia-l4"}, "tpu": {"chips": 4}}},
        "spec.accelerator.tpu is only allowed",
    ),
    (
        "labels-and-labelmap",
        {"dataset": {"uri": "digits", "labels": [1], "labelMap": {"1": 0}}},
        "spec.dataset.labels and spec.dataset.labelMap are mutually exclusive",
    ),
    ("bad-accelerator-type", {"accelerator": {"type": "fpga"}}, "accelerator.type"),
    ("zero-generations", {"budget": {"generations": 0}}, "budget.generations"),
    ("size-scale-zero", {"search": {"sizeScale": 0}}, "search.sizeScale"),
    ("size-scale-above-one", {"search": {"sizeScale": 1.5}}, "search.sizeScale"),
    ("bad-task-name", {"task": "Digits!"}, "spec.task"),
    (
        "gpu-count-too-high",
        {"accelerator": {"type": "gpu", "gpu": {"type": "nvidia-l4", "count": 99}}},
        "gpu.count",
    ),
    (
        "bad-topology",
        {"accelerator": {"type": "tpu", "tpu": {"accelerator": "tpu-v5", "topology": "2-4"}}},
        "tpu.topology",
    ),
    ("misspelt-field", {"budgett": {"generations": 1}}, "budgett"),
    ("bad-quantity", {"resources": {"requests": {"cpu": "lots"}}}, "resources.requests.cpu"),
    ("negative-seed", {"seed": -1}, "spec.seed"),
    ("bad-queue-name", {"queueName": "Bad_Queue"}, "spec.queueName"),
]


IMMUTABLE_TI = [
    (("task",), "mnist", "spec.task is immutable"),
    (("systemRef",), {"name": "other"}, "spec.systemRef is immutable"),
    (("dataset",), {"uri": "mnist"}, "spec.dataset is immutable"),
    (("queueName",), "other", "spec.queueName is immutable"),
]


def mts(**spec: Any) -> dict[str, Any]:
    base = {
        "apiVersion": "mutask.dev/v1alpha1",
        "kind": "MultitaskSystem",
        "metadata": {"name": "s", "namespace": "ns"},
        "spec": {"storage": {"uri": "gs://bucket/p"}},
    }
    base["spec"].update(copy.deepcopy(spec))
    return base


BAD_MTS = [
    (
        {
            "rootModel": {
                "weightsURI": "gs://b/w",
                "bootstrap": {"task": "d", "dataset": {"uri": "digits"}},
            }
        },
        "spec.rootModel.weightsURI and spec.rootModel.bootstrap are mutually exclusive",
    ),
    ({"storage": {"uri": "s3://bucket"}}, "storage.uri"),
    ({"maxConcurrentIntroductions": 0}, "maxConcurrentIntroductions"),
    ({"scoring": {"sizeScale": 0}}, "scoring.sizeScale"),
    (
        {"defaults": {"accelerator": {"type": "gpu"}}},
        "spec.defaults.accelerator.gpu is required",
    ),
    ({"rootModel": {"imageSize": 2}}, "rootModel.imageSize"),
]

FILE_NEEDS_PVC = "spec.storage.persistentVolumeClaim is required when spec.storage.uri is file://"

BAD_PVC = [
    ("missing", {}, "claimName"),
    ("empty", {"claimName": ""}, "claimName"),
    ("not-a-dns-name", {"claimName": "Bad_Name"}, "claimName"),
]
