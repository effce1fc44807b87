"""Sample MultitaskSystem/TaskIntroduction bodies shared by the operator tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]

SYSTEM: dict[str, Any] = {
    "apiVersion": "mutask.dev/v1alpha1",
    "kind": "MultitaskSystem",
    "metadata": {"name": "vision", "namespace": "ml", "uid": "sys-uid", "generation": 1},
    "spec": {
        "storage": {"uri": "gs://bucket/systems/vision"},
        "rootModel": {"preset": "mu-small", "imageSize": 32},
        "scoring": {"sizeScale": 0.5},
        "defaults": {
            "accelerator": {"type": "cpu"},
            "budget": {"generations": 3, "candidatesPerGeneration": 5, "batchSize": 16},
        },
        "maxConcurrentIntroductions": 4,
    },
}

INTRO: dict[str, Any] = {
    "apiVersion": "mutask.dev/v1alpha1",
    "kind": "TaskIntroduction",
    "metadata": {"name": "digits-1", "namespace": "ml", "uid": "ti-uid", "generation": 1},
    "spec": {
        "systemRef": {"name": "vision"},
        "task": "digits",
        "dataset": {"uri": "digits", "trainSplit": "train[:80%]", "validationSplit": "train[80%:]"},
        "seed": 3,
    },
}


# Plan tables: the clock value, trainer Jobs in their states.
NOW = "2026-01-01T00:00:10Z"
COMPLETE = {"conditions": [{"type": "Complete", "status": "True"}]}
FAILED = {"conditions": [{"type": "Failed", "status": "True", "reason": "PodFailurePolicy"}]}


def job(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "mti-digits-1"}, "spec": spec, "status": status or {}}


def merged(base: dict[str, Any], **spec: Any) -> dict[str, Any]:
    out = copy.deepcopy(base)
    out["spec"].update(copy.deepcopy(spec))
    return out


def load_crd(plural: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(
        (ROOT / "manifests" / "crds" / f"mutask.dev_{plural}.yaml").read_text()
    )
    return data
