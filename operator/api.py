"""The operator's own vocabulary: labels, GKE node keys, condition types and reasons.

Nothing here talks to Kubernetes; it is the vocabulary of the CRDs in manifests/crds.
"""

from __future__ import annotations

from typing import Final

from mutask.contract import GROUP

OPERATOR: Final = f"{GROUP}/operator"  # its finalizer (on systems) and reporting component

# Labels and annotations put on everything the operator creates.
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
MANAGED_BY: Final = "mutask-operator"
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_SYSTEM: Final = f"{GROUP}/system"
LABEL_TASK: Final = f"{GROUP}/task"
LABEL_INTRODUCTION: Final = f"{GROUP}/taskintroduction"
LABEL_KUEUE_QUEUE: Final = "kueue.x-k8s.io/queue-name"
ANNOTATION_TASK: Final = f"{GROUP}/task"

# GKE node labels, resources and taints.
GKE_TPU_ACCELERATOR: Final = "cloud.google.com/gke-tpu-accelerator"
GKE_TPU_TOPOLOGY: Final = "cloud.google.com/gke-tpu-topology"
GKE_ACCELERATOR: Final = "cloud.google.com/gke-accelerator"
GKE_SPOT: Final = "cloud.google.com/gke-spot"
TPU_RESOURCE: Final = "google.com/tpu"
GPU_RESOURCE: Final = "nvidia.com/gpu"

# TaskIntroduction condition types. One of PENDING..SUSPENDED is True at a time (the "state",
# printed as status.phase); ACCEPTED alone means the Job exists. PENDING: the Job exists but
# the scheduler finds no node for its pod (reason Unschedulable). NEW: no condition yet (never
# reconciled; a state, not a condition type).
NEW: Final = "New"
PENDING: Final = "Pending"
ACCEPTED: Final = "Accepted"
QUEUED: Final = "Queued"
RUNNING: Final = "Running"
SUCCEEDED: Final = "Succeeded"
FAILED: Final = "Failed"
SUSPENDED: Final = "Suspended"
NO_FORGETTING: Final = "NoForgettingVerified"
UNSCHEDULABLE: Final = "Unschedulable"  # reason of PENDING
STATES: Final = (ACCEPTED, PENDING, QUEUED, RUNNING, SUCCEEDED, FAILED, SUSPENDED)
TERMINAL: Final = frozenset({SUCCEEDED, FAILED})
ACTIVE: Final = frozenset({ACCEPTED, PENDING, RUNNING})  # its Job exists: holds a slot

# MultitaskSystem condition types.
READY: Final = "Ready"
STORAGE_REACHABLE: Final = "StorageReachable"
ROOT_READY: Final = "RootReady"


def label_value(text: str) -> str:
    """Make ``text`` a valid label value (``private:x`` -> ``private.x``; max 63 chars)."""
    cleaned = "".join(c if c.isalnum() or c in "-_." else "." for c in text)[:63]
    return cleaned.strip("-_.") or "none"
