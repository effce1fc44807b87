"""Parse a TaskIntroduction or MultitaskSystem body once, into a frozen spec: the one parser.

Everything downstream (plan, builders, admission, indexes) reads these, never the raw ``spec``
dicts: ``systemRef``, the accelerator block and its fallback to the system's default, the root
bootstrap and the concurrency limit are read here and nowhere else. The spec keeps a frozen copy
of the CRD's ``spec`` too, from which ``config_builder`` maps the trainer's sections. Pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from mutask import contract
from mutask.operator.topology import tpu_hosts


def freeze(value: Any) -> Any:
    """A read-only deep copy of JSON data (objects -> mapping proxies, arrays -> tuples)."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """Plain JSON data again (the inverse of :func:`freeze`)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


def _sub(obj: Any, key: str) -> Mapping[str, Any]:
    value = obj.get(key) if isinstance(obj, Mapping) else None
    return value if isinstance(value, Mapping) else {}


@dataclass(frozen=True)
class ObjectRef:
    """Identity of one custom resource: enough for paths, owner references and events."""

    kind: str
    namespace: str
    name: str
    uid: str | None = None
    api_version: str = contract.API_VERSION
    generation: int | None = None
    resource_version: str | None = None
    created: str = ""
    deleting: bool = False

    def as_object(self) -> dict[str, Any]:
        """A minimal body of the object (what events and owner references read)."""
        return {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "uid": self.uid,
                "resourceVersion": self.resource_version,
            },
        }


def parse_ref(body: Mapping[str, Any], kind: str) -> ObjectRef:
    meta = _sub(body, "metadata")
    generation = meta.get("generation")
    return ObjectRef(
        kind=str(body.get("kind") or kind),
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        uid=str(meta["uid"]) if meta.get("uid") else None,
        api_version=str(body.get("apiVersion") or contract.API_VERSION),
        generation=int(generation) if generation is not None else None,
        resource_version=str(meta["resourceVersion"]) if meta.get("resourceVersion") else None,
        created=str(meta.get("creationTimestamp") or ""),
        deleting=bool(meta.get("deletionTimestamp")),
    )


@dataclass(frozen=True)
class Accelerator:
    """``spec.accelerator``: the hardware of a trainer pod."""

    type: str = "cpu"
    cpu_nodes: int = 1
    gpu_type: str | None = None
    gpu_count: int = 1
    gpu_nodes: int = 1
    tpu_accelerator: str | None = None
    tpu_topology: str | None = None
    tpu_chips: int = 4
    spot: bool = False

    def hosts(self, field: str = "spec.accelerator") -> int:
        """Pods (hosts) one trainer run spans: a TPU slice's hosts, ``gpu.nodes``, ``cpu.nodes``.

        Raises :class:`~mutask.operator.topology.TopologyError` for a TPU shape GKE does not
        offer (``field``: the block's path, for the message)."""
        if self.type == "gpu":
            return self.gpu_nodes
        if self.type == "cpu":
            return self.cpu_nodes
        if self.type == "tpu" and self.tpu_accelerator and self.tpu_topology:
            return tpu_hosts(self.tpu_accelerator, self.tpu_topology, self.tpu_chips, field)
        return 1


def parse_accelerator(block: Mapping[str, Any]) -> Accelerator:
    cpu, gpu, tpu = _sub(block, "cpu"), _sub(block, "gpu"), _sub(block, "tpu")
    return Accelerator(
        type=str(block.get("type") or "cpu"),
        cpu_nodes=int(cpu.get("nodes", 1)),
        gpu_type=str(gpu["type"]) if gpu.get("type") else None,
        gpu_count=int(gpu.get("count", 1)),
        gpu_nodes=int(gpu.get("nodes", 1)),
        tpu_accelerator=str(tpu["accelerator"]) if tpu.get("accelerator") else None,
        tpu_topology=str(tpu["topology"]) if tpu.get("topology") else None,
        tpu_chips=int(tpu.get("chips", 4)),
        spot=bool(block.get("spot", False)),
    )


@dataclass(frozen=True)
class IntroductionSpec:
    """A TaskIntroduction's spec (``raw``: the CRD spec, frozen, for the trainer config)."""

    ref: ObjectRef
    system: str  # spec.systemRef.name
    task: str
    accelerator: Accelerator | None = None  # None: the system's default
    resources: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    queue_name: str | None = None
    suspend: bool = False
    image: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def system_key(self) -> tuple[str, str]:
        """(namespace, system name): the key of the system's admission and index entries."""
        return (self.ref.namespace, self.system)


def parse_introduction(body: Mapping[str, Any]) -> IntroductionSpec:
    spec = _sub(body, "spec")
    accel = _sub(spec, "accelerator")
    resources = _sub(spec, "resources")
    return IntroductionSpec(
        ref=parse_ref(body, contract.TI_KIND),
        system=str(_sub(spec, "systemRef").get("name") or ""),
        task=str(spec.get("task") or ""),
        accelerator=parse_accelerator(accel) if accel else None,
        resources=freeze({k: _sub(resources, k) for k in ("requests", "limits")}),
        queue_name=str(spec["queueName"]) if spec.get("queueName") else None,
        suspend=bool(spec.get("suspend", False)),
        image=str(spec["image"]) if spec.get("image") else None,
        raw=freeze(spec),
    )


@dataclass(frozen=True)
class SystemSpec:
    """A MultitaskSystem's spec (``raw``: the CRD spec, frozen, for the trainer config)."""

    ref: ObjectRef
    storage_uri: str
    claim_name: str | None = None  # spec.storage.persistentVolumeClaim.claimName
    bootstrap: Mapping[str, Any] | None = None  # spec.rootModel.bootstrap {task, dataset}
    default_accelerator: Accelerator = Accelerator()
    max_concurrent: int = 4
    raw: Mapping[str, Any] = field(default_factory=dict)

    def accelerator_of(self, intro: IntroductionSpec) -> Accelerator:
        """The introduction's accelerator, else the system's default, else cpu."""
        return intro.accelerator or self.default_accelerator


def parse_system(body: Mapping[str, Any]) -> SystemSpec:
    spec = _sub(body, "spec")
    storage = _sub(spec, "storage")
    claim = _sub(storage, "persistentVolumeClaim").get("claimName")
    boot = _sub(_sub(spec, "rootModel"), "bootstrap")
    accel = _sub(_sub(spec, "defaults"), "accelerator")
    return SystemSpec(
        ref=parse_ref(body, contract.MTS_KIND),
        storage_uri=str(storage.get("uri") or ""),
        claim_name=str(claim) if claim else None,
        bootstrap=freeze(boot) if boot else None,
        default_accelerator=parse_accelerator(accel) if accel else Accelerator(),
        max_concurrent=int(spec.get("maxConcurrentIntroductions") or 4),
        raw=freeze(spec),
    )


BOOTSTRAP_FIELDS = ("task", "dataset")
"""The fields of ``spec.rootModel.bootstrap``: the bootstrap introduction's spec of that name."""


def bootstrap_introduction(system: SystemSpec) -> IntroductionSpec:
    """The synthetic introduction of the root bootstrap Job (owned by the system)."""
    boot = system.bootstrap or {}
    raw = {
        "systemRef": {"name": system.ref.name},
        **{k: boot[k] for k in BOOTSTRAP_FIELDS if k in boot},
    }
    return IntroductionSpec(
        ref=ObjectRef(
            kind=contract.TI_KIND,
            namespace=system.ref.namespace,
            name=f"{system.ref.name}-bootstrap",
        ),
        system=system.ref.name,
        task=str(boot.get("task") or ""),
        raw=freeze(raw),
    )
