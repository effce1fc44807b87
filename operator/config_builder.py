"""Pure builder: (MultitaskSystem, TaskIntroduction) -> the trainer's config and its ConfigMap.

The CRD -> trainer-config mapping is derived from the trainer config's dataclasses
(``mutask.trainer.config.IntroduceConfig``): a CRD property is the camelCase spelling of a
config field and a CRD object maps onto a nested config dataclass. Written by hand are only:

* ``SOURCES``: which CRD object(s) feed each top-level config field, in precedence order (a
  TaskIntroduction field > the MultitaskSystem's default > the trainer's default);
* ``RENAMED``: the properties the CRD spells otherwise;
* ``DEVICES``: the one value the operator translates (accelerator type -> torch device);
* ``OPERATOR_SET``: config fields the operator fills itself; ``OPERATOR_ONLY``: CRD properties
  that never reach the trainer (scheduling, resources, admission).

``tests/operator/test_op_config_mapping.py`` walks every CRD property and checks that it reaches
the config (round trip) or is listed in ``OPERATOR_ONLY``. No API calls.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from mutask import contract
from mutask.operator import api
from mutask.operator.objects import common_labels, job_name, owner_reference
from mutask.operator.settings import Settings
from mutask.operator.spec import BOOTSTRAP_FIELDS, IntroductionSpec, SystemSpec, thaw
from mutask.trainer.config import BudgetConfig, DatasetConfig, IntroduceConfig, ModelConfig

TI, MTS = contract.TI_KIND, contract.MTS_KIND

SOURCES: Mapping[str, tuple[tuple[str, str], ...]] = {
    "task": ((TI, "spec.task"),),
    "dataset": ((TI, "spec.dataset"),),
    "store": ((MTS, "spec.storage.uri"),),
    "budget": ((MTS, "spec.defaults.budget"), (TI, "spec.budget")),
    "search": ((MTS, "spec.scoring"), (TI, "spec.search")),
    "model": ((MTS, "spec.rootModel"),),
    "seed": ((TI, "spec.seed"),),
}
RENAMED: Mapping[tuple[type, str], str] = {
    (DatasetConfig, "source"): "uri",
    (BudgetConfig, "candidates"): "candidatesPerGeneration",
    (ModelConfig, "weights"): "weightsURI",
}
DEVICES: Mapping[str, str] = {"cpu": "cpu", "gpu": "cuda", "tpu": "xla"}
ACCELERATOR_TYPE = ((TI, "spec.accelerator.type"), (MTS, "spec.defaults.accelerator.type"))
OPERATOR_SET: Mapping[str, str] = {
    "device": "DEVICES[the effective accelerator type]",
    "precision": "bfloat16 on TPU, else auto",
    "metrics_port": "the --trainer-metrics-port setting",
    "bootstrap_root": "true in the root bootstrap Job and for an introduction into an empty store",
    "workers": "trainer default: one candidate per requested CPU (MUTASK_TRAINER_CPUS)",
    "agent_id": "trainer default",
}
OPERATOR_ONLY: Mapping[str, tuple[str, ...]] = {
    TI: (
        "spec.systemRef",
        "spec.accelerator.cpu",
        "spec.accelerator.gpu",
        "spec.accelerator.tpu",
        "spec.accelerator.spot",
        "spec.resources",
        "spec.queueName",
        "spec.suspend",
        "spec.image",
    ),
    MTS: (
        "spec.storage.persistentVolumeClaim",
        "spec.defaults.accelerator.cpu",
        "spec.defaults.accelerator.gpu",
        "spec.defaults.accelerator.tpu",
        "spec.defaults.accelerator.spot",
        "spec.maxConcurrentIntroductions",
    ),
}


@dataclass(frozen=True)
class Route:
    """One CRD property -> one trainer-config field (dotted paths)."""

    kind: str
    crd: str
    config: str
    bootstrap: bool = False  # read only for the root bootstrap Job (spec.rootModel.bootstrap)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def crd_name(cls: type, field: str) -> str:
    return RENAMED.get((cls, field)) or camel(field)


def _routes(hint: Any, kind: str, crd: str, config: str) -> Iterator[Route]:
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        hints = typing.get_type_hints(hint)
        for f in dataclasses.fields(hint):
            yield from _routes(
                hints[f.name], kind, f"{crd}.{crd_name(hint, f.name)}", f"{config}.{f.name}"
            )
    else:
        yield Route(kind, crd, config)


@cache
def routes() -> tuple[Route, ...]:
    """Every CRD property that reaches the trainer config, in precedence order."""
    hints = typing.get_type_hints(IntroduceConfig)
    out = [
        route
        for name, sources in SOURCES.items()
        for kind, path in sources
        for route in _routes(hints[name], kind, path, name)
    ]
    for r in list(out):  # the bootstrap block is the bootstrap introduction's task and dataset
        field = r.crd.split(".")[1]
        if r.kind == TI and field in BOOTSTRAP_FIELDS:
            crd = "spec.rootModel.bootstrap." + r.crd.removeprefix("spec.")
            out.append(Route(MTS, crd, r.config, bootstrap=True))
    return tuple(out)


def _lookup(spec: Mapping[str, Any], crd_path: str) -> Any:
    node: Any = {"spec": spec}
    for key in crd_path.split("."):
        if not isinstance(node, Mapping) or node.get(key) is None:
            return None
        node = node[key]
    return node


def _put(out: dict[str, Any], path: str, value: Any) -> None:
    *parents, leaf = path.split(".")
    for key in parents:
        out = out.setdefault(key, {})
    out[leaf] = value


def config_data(
    system: SystemSpec, intro: IntroductionSpec, settings: Settings, *, bootstrap_root: bool
) -> dict[str, Any]:
    """The trainer config's JSON object, before the trainer's own validation."""
    specs = {TI: intro.raw, MTS: system.raw}
    out: dict[str, Any] = {}
    for route in routes():
        if route.bootstrap:  # served by the TI routes of the bootstrap introduction
            continue
        value = _lookup(specs[route.kind], route.crd)
        if value is not None:
            _put(out, route.config, thaw(value))
    accel = system.accelerator_of(intro)
    out["device"] = DEVICES.get(accel.type, "auto")
    out["precision"] = "bfloat16" if accel.type == "tpu" else "auto"
    out["metrics_port"] = settings.trainer_metrics_port
    out["bootstrap_root"] = bootstrap_root
    return out


def build_config(
    system: SystemSpec, intro: IntroductionSpec, settings: Settings, *, bootstrap_root: bool = False
) -> IntroduceConfig:
    """The trainer config of ``intro``; validated (raises ConfigError naming the field)."""
    data = config_data(system, intro, settings, bootstrap_root=bootstrap_root)
    return IntroduceConfig.from_dict(data)


def build_configmap(
    system: SystemSpec,
    intro: IntroductionSpec,
    settings: Settings,
    *,
    bootstrap_root: bool = False,
    creates_root: bool = False,
) -> dict[str, Any]:
    """The ConfigMap holding ``config.json`` (exactly ``IntroduceConfig.to_json()``).

    ``bootstrap_root``: the system's root bootstrap Job (owned by the system).
    ``creates_root``: an introduction into an empty store, which creates the root first (the
    trainer skips that when the store already holds one); still owned by the introduction."""
    root = bootstrap_root or creates_root
    config = build_config(system, intro, settings, bootstrap_root=root)
    owner = system.ref if bootstrap_root else intro.ref
    labels = common_labels(system.ref.name, config.task, intro.ref.name)
    labels.update(settings.extra_labels)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": job_name(intro.ref.name),
            "namespace": intro.ref.namespace,
            "labels": labels,
            "annotations": {api.ANNOTATION_TASK: config.task},
            "ownerReferences": [owner_reference(owner)],
        },
        "data": {contract.CONFIG_FILE: config.to_json()},
    }
