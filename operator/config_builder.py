"""Pure builder: (MultitaskSystem, TaskIntroduction, settings) -> trainer IntroduceConfig/ConfigMap.

Maps the CRDs' camelCase fields onto ``mutask.trainer.config.IntroduceConfig`` (the trainer's
JSON contract). Precedence: TaskIntroduction field > MultitaskSystem ``spec.defaults`` >
IntroduceConfig default. No API calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mutask import contract
from mutask.operator import api
from mutask.operator.objects import Obj, common_labels, job_name, meta, owner_reference, spec
from mutask.operator.settings import OperatorSettings
from mutask.trainer.config import (
    BudgetConfig,
    DatasetConfig,
    IntroduceConfig,
    ModelConfig,
    SearchConfig,
)

_DEVICES = {"cpu": "cpu", "gpu": "cuda", "tpu": "xla"}
_BUDGET = {
    "generations": "generations",
    "candidatesPerGeneration": "candidates",
    "validationRounds": "validation_rounds",
    "stepsPerRound": "steps_per_round",
    "batchSize": "batch_size",
    "maxValidationExamples": "max_validation_examples",
}
_SEARCH = {
    "flopsScale": "flops_scale",
    "perActionMu": "per_action_mu",
    "adapters": "adapters",
    "tuneDepth": "tune_depth",
    "populationCap": "population_cap",
}


def _sub(obj: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = obj.get(key)
    return value if isinstance(value, Mapping) else {}


def resolve_accelerator(system: Obj, intro: Obj) -> dict[str, Any]:
    """The effective accelerator block: the introduction's, else the system default, else cpu."""
    own = _sub(spec(intro), "accelerator")
    if own:
        return dict(own)
    default = _sub(_sub(spec(system), "defaults"), "accelerator")
    return dict(default) if default else {"type": "cpu"}


def bootstrap_introduction(system: Obj) -> dict[str, Any]:
    """A synthetic introduction for the root bootstrap (``spec.rootModel.bootstrap``)."""
    m = meta(system)
    boot = _sub(_sub(spec(system), "rootModel"), "bootstrap")
    return {
        "apiVersion": contract.API_VERSION,
        "kind": contract.MTS_KIND,
        "metadata": {"name": f"{m.get('name')}-bootstrap", "namespace": m.get("namespace")},
        "spec": {
            "systemRef": {"name": m.get("name")},
            "task": boot.get("task"),
            "dataset": dict(_sub(boot, "dataset")),
        },
    }


def build_config(
    system: Obj, intro: Obj, settings: OperatorSettings, *, bootstrap_root: bool = False
) -> IntroduceConfig:
    """The trainer config of ``intro``; validated (raises ConfigError naming the field)."""
    s_spec, i_spec = spec(system), spec(intro)
    ds = _sub(i_spec, "dataset")
    dataset = DatasetConfig(source=str(ds.get("uri", "")))
    for crd_key, attr in (
        ("trainSplit", "train_split"),
        ("validationSplit", "validation_split"),
        ("testSplit", "test_split"),
        ("transform", "transform"),
        ("maxTrainExamples", "max_train_examples"),
    ):
        if ds.get(crd_key) is not None:
            setattr(dataset, attr, ds[crd_key])
    if ds.get("labels") is not None:
        dataset.labels = [int(v) for v in ds["labels"]]
    if ds.get("labelMap") is not None:
        dataset.label_map = {str(k): int(v) for k, v in ds["labelMap"].items()}

    budget = BudgetConfig()
    for source in (_sub(_sub(s_spec, "defaults"), "budget"), _sub(i_spec, "budget")):
        for crd_key, attr in _BUDGET.items():
            if source.get(crd_key) is not None:
                setattr(budget, attr, int(source[crd_key]))

    search = SearchConfig()
    i_search = _sub(i_spec, "search")
    scale = i_search.get("sizeScale", _sub(s_spec, "scoring").get("sizeScale"))
    if scale is not None:
        search.size_scale = float(scale)
    for crd_key, attr in _SEARCH.items():
        if i_search.get(crd_key) is not None:
            setattr(search, attr, i_search[crd_key])

    root = _sub(s_spec, "rootModel")
    model = ModelConfig()
    if root.get("preset"):
        model.preset = str(root["preset"])
    if root.get("imageSize") is not None:
        model.image_size = int(root["imageSize"])
    if root.get("weightsURI"):
        model.weights = str(root["weightsURI"])

    accel = resolve_accelerator(system, intro)
    config = IntroduceConfig(
        task=str(i_spec.get("task", "")),
        dataset=dataset,
        store=str(_sub(s_spec, "storage").get("uri", "")),
        budget=budget,
        search=search,
        model=model,
        seed=int(i_spec.get("seed", 0) or 0),
        device=_DEVICES.get(str(accel.get("type", "cpu")), "auto"),
        precision="bfloat16" if accel.get("type") == "tpu" else "auto",
        metrics_port=settings.metrics_port,
        bootstrap_root=bootstrap_root,
    )
    return config.validate()


def build_configmap(
    system: Obj,
    intro: Obj,
    settings: OperatorSettings,
    *,
    bootstrap_root: bool = False,
    init_root: bool = False,
) -> dict[str, Any]:
    """The ConfigMap holding ``config.json`` (exactly ``IntroduceConfig.to_json()``).

    ``bootstrap_root``: the system's root bootstrap (owned by the system). ``init_root``: an
    introduction into an empty store, which creates the root first (the trainer skips that
    when the store already holds one)."""
    config = build_config(system, intro, settings, bootstrap_root=bootstrap_root or init_root)
    m = meta(intro)
    owner = system if bootstrap_root else intro
    labels = common_labels(str(meta(system).get("name")), config.task, str(m.get("name")))
    labels.update(settings.extra_labels)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": job_name(str(m.get("name"))),
            "namespace": m.get("namespace"),
            "labels": labels,
            "annotations": {api.ANNOTATION_TASK: config.task},
            "ownerReferences": [owner_reference(owner)],
        },
        "data": {contract.CONFIG_FILE: config.to_json()},
    }
