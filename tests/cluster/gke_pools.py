"""Simulated GKE node pools: kwok Node objects with the labels, capacity and taints GKE sets.

What GKE puts on a node of each pool kind (public GKE docs):
  * every node: ``cloud.google.com/gke-nodepool``, ``node.kubernetes.io/instance-type``,
    ``topology.kubernetes.io/zone``, ``kubernetes.io/{arch,os,hostname}``;
  * GPU nodes: ``cloud.google.com/gke-accelerator: <gpu type>``, ``nvidia.com/gpu`` capacity and
    the taint ``nvidia.com/gpu=present:NoSchedule``;
  * TPU nodes: ``cloud.google.com/gke-tpu-accelerator``, ``cloud.google.com/gke-tpu-topology``,
    ``google.com/tpu`` capacity (chips per host) and the taint
    ``google.com/tpu=present:NoSchedule``; a multi-host slice is one pool of several hosts
    sharing the topology label;
  * Spot nodes: ``cloud.google.com/gke-spot: "true"`` and (as GKE recommends for Spot pools) the
    taint ``cloud.google.com/gke-spot=true:NoSchedule``.
Nodes carry kwok's annotation so the kwok controller (and not a kubelet) plays their pods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mutask.operator import api

KWOK_ANNOTATION = {"kwok.x-k8s.io/node": "fake"}
NODEPOOL = "cloud.google.com/gke-nodepool"
ZONE = "us-central2-b"


@dataclass(frozen=True)
class NodePool:
    """One GKE node pool: ``count`` identical nodes."""

    name: str
    machine_type: str
    count: int
    cpu: str
    memory: str
    labels: dict[str, str] = field(default_factory=dict)
    devices: dict[str, str] = field(default_factory=dict)
    taints: tuple[dict[str, str], ...] = ()

    def node_names(self) -> list[str]:
        return [f"gke-sim-{self.name}-{i}" for i in range(self.count)]

    def nodes(self) -> list[dict[str, Any]]:
        capacity = {"cpu": self.cpu, "memory": self.memory, "pods": "110", **self.devices}
        return [
            {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": dict(KWOK_ANNOTATION),
                    "labels": {
                        "kubernetes.io/arch": "amd64",
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/hostname": name,
                        "type": "kwok",
                        NODEPOOL: self.name,
                        "node.kubernetes.io/instance-type": self.machine_type,
                        "topology.kubernetes.io/zone": ZONE,
                        **self.labels,
                    },
                },
                "spec": {"taints": [dict(t) for t in self.taints]} if self.taints else {},
                "status": {"capacity": dict(capacity), "allocatable": dict(capacity)},
            }
            for name in self.node_names()
        ]


def _taint(key: str, value: str) -> dict[str, str]:
    return {"key": key, "value": value, "effect": "NoSchedule"}


GPU_TAINT = _taint(api.GPU_RESOURCE, "present")
TPU_TAINT = _taint(api.TPU_RESOURCE, "present")
SPOT_TAINT = _taint(api.GKE_SPOT, "true")

CPU = NodePool("cpu-pool", "e2-standard-8", 2, "8", "32Gi")
GPU_L4 = NodePool(
    "l4-pool",
    "g2-standard-8",
    1,
    "8",
    "32Gi",
    labels={api.GKE_ACCELERATOR: "nvidia-l4"},
    devices={api.GPU_RESOURCE: "1"},
    taints=(GPU_TAINT,),
)
# Single-host TPU v5e: ct5lp-hightpu-8t, topology 2x4 = 8 chips on one host.
TPU_V5E_SINGLE = NodePool(
    "v5e-2x4-pool",
    "ct5lp-hightpu-8t",
    1,
    "224",
    "192Gi",
    labels={api.GKE_TPU_ACCELERATOR: "tpu-v5-lite-podslice", api.GKE_TPU_TOPOLOGY: "2x4"},
    devices={api.TPU_RESOURCE: "8"},
    taints=(TPU_TAINT,),
)
# Multi-host TPU v5e slice: topology 4x4 = 16 chips over 4 ct5lp-hightpu-4t hosts (4 chips each).
TPU_V5E_MULTI = NodePool(
    "v5e-4x4-pool",
    "ct5lp-hightpu-4t",
    4,
    "112",
    "192Gi",
    labels={api.GKE_TPU_ACCELERATOR: "tpu-v5-lite-podslice", api.GKE_TPU_TOPOLOGY: "4x4"},
    devices={api.TPU_RESOURCE: "4"},
    taints=(TPU_TAINT,),
)
# Spot A100s: a2-highgpu-2g (2 GPUs) on Spot VMs.
SPOT_A100 = NodePool(
    "a100-spot-pool",
    "a2-highgpu-2g",
    1,
    "24",
    "170Gi",
    labels={api.GKE_ACCELERATOR: "nvidia-tesla-a100", api.GKE_SPOT: "true"},
    devices={api.GPU_RESOURCE: "2"},
    taints=(GPU_TAINT, SPOT_TAINT),
)
# Spot CPU nodes.
SPOT_CPU = NodePool(
    "cpu-spot-pool",
    "e2-standard-8",
    1,
    "8",
    "32Gi",
    labels={api.GKE_SPOT: "true"},
    taints=(SPOT_TAINT,),
)

POOLS: tuple[NodePool, ...] = (CPU, GPU_L4, TPU_V5E_SINGLE, TPU_V5E_MULTI, SPOT_A100, SPOT_CPU)


def pool_of(node_name: str) -> NodePool:
    for pool in POOLS:
        if node_name in pool.node_names():
            return pool
    raise KeyError(f"{node_name} is in no simulated pool")
