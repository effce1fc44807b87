"""The CRDs refuse what the trainer would refuse (issue 12): bounds, labels, label maps,
transforms, splits, dataset and store URIs, TPU slices, presets and image sizes, each named
in the error; near misses pass. The CRDs' numbers, enums and patterns are the trainer's own
(mutask.trainer.limits, the preset registry, the data transforms), so the two cannot drift."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest
from op_crd_limits import GOOD_MTS, GOOD_TI, LIMIT_MTS, LIMIT_TI, mts, ti
from op_crdtools import all_errors, cel_errors, version_schema
from op_samples import load_crd

from mutask.operator.config_builder import build_configmap
from mutask.operator.settings import Settings
from mutask.operator.spec import parse_introduction, parse_system
from mutask.trainer import limits
from mutask.trainer.config import ConfigError, IntroduceConfig
from mutask.trainer.data import TRANSFORMS, DatasetError, parse_split
from mutask.trainer.models import get_shape, list_presets

TI = load_crd("taskintroductions")
MTS = load_crd("multitasksystems")
OPERATOR_ONLY = ("accelerator",)  # never reaches the trainer's config


def _ids(cases: list[Any]) -> list[str]:
    return [c[0] for c in cases]


@pytest.mark.parametrize(("name", "spec", "field"), LIMIT_TI, ids=_ids(LIMIT_TI))
def test_introductions_the_trainer_would_refuse_are_refused(
    name: str, spec: dict[str, Any], field: str
) -> None:
    errors = all_errors(TI, ti(**spec))
    assert any(field in e or field.replace("spec.", "") in e for e in errors), errors


@pytest.mark.parametrize(("name", "spec", "field"), LIMIT_MTS, ids=_ids(LIMIT_MTS))
def test_systems_the_trainer_or_the_pod_would_refuse_are_refused(
    name: str, spec: dict[str, Any], field: str
) -> None:
    errors = all_errors(MTS, mts(**spec))
    assert any(field in e or field.replace("spec.", "") in e for e in errors), errors


@pytest.mark.parametrize(("name", "spec"), GOOD_TI, ids=_ids(GOOD_TI))
def test_near_miss_introductions_pass(name: str, spec: dict[str, Any]) -> None:
    assert all_errors(TI, ti(**spec)) == []
    assert cel_errors(TI, ti(**spec), old=ti(**spec)) == []


@pytest.mark.parametrize(("name", "spec"), GOOD_MTS, ids=_ids(GOOD_MTS))
def test_near_miss_systems_pass(name: str, spec: dict[str, Any]) -> None:
    assert all_errors(MTS, mts(**spec)) == []


def _trainer_config(spec: dict[str, Any]) -> IntroduceConfig:
    system = mts(storage={"uri": "gs://bucket/p"})
    system["metadata"]["uid"] = "u"
    intro = ti(**spec)
    intro["metadata"]["uid"] = "v"
    cm = build_configmap(parse_system(system), parse_introduction(intro), Settings())
    return IntroduceConfig.from_json(cm["data"]["config.json"])


@pytest.mark.parametrize(
    ("name", "spec", "field"),
    [c for c in LIMIT_TI if not set(c[1]) & set(OPERATOR_ONLY)],
    ids=lambda v: (
        v if isinstance(v, str) and not v.startswith(("spec", "dataset", "budget")) else ""
    ),
)
def test_the_trainer_refuses_them_too(name: str, spec: dict[str, Any], field: str) -> None:
    with pytest.raises((ConfigError, DatasetError, ValueError)):
        _trainer_config(spec)


@pytest.mark.parametrize(("name", "spec"), GOOD_TI, ids=_ids(GOOD_TI))
def test_the_trainer_takes_the_near_misses(name: str, spec: dict[str, Any]) -> None:
    _trainer_config(spec)


def _prop(crd: dict[str, Any], *path: str) -> dict[str, Any]:
    node = version_schema(crd)
    for key in path:
        node = node["properties"][key]
    return node


DATASETS = [
    (TI, ("spec", "dataset")),
    (MTS, ("spec", "rootModel", "bootstrap", "dataset")),
]


@pytest.mark.parametrize(("crd", "path"), DATASETS, ids=["ti", "mts-bootstrap"])
def test_dataset_bounds_are_the_trainers(crd: dict[str, Any], path: tuple[str, ...]) -> None:
    d = _prop(crd, *path)["properties"]
    assert d["labels"]["minItems"] == 2 and d["labels"]["maxItems"] == limits.MAX_CLASSES
    assert d["labels"]["items"]["maximum"] == limits.MAX_CLASSES - 1
    assert d["labels"]["x-kubernetes-list-type"] == "set"
    assert d["labelMap"]["additionalProperties"]["maximum"] == limits.MAX_CLASSES - 1
    assert d["transform"]["enum"] == list(limits.TRANSFORMS) == list(TRANSFORMS)
    for split in ("trainSplit", "validationSplit", "testSplit"):
        assert d[split]["pattern"] == limits.SPLIT_PATTERN
    assert d["maxTrainExamples"]["maximum"] == limits.MAX_TRAIN_EXAMPLES_MAX
    assert d["uri"]["pattern"] == limits.DATASET_URI_PATTERN
    assert d["trainSplit"]["default"] == d["validationSplit"]["default"] == "auto"
    builtin_rule = next(
        r["rule"] for r in _prop(crd, *path)["x-kubernetes-validations"] if "l < 10" in r["rule"]
    )
    assert all(f"'{b}'" in builtin_rule for b in limits.BUILTIN_SOURCES)


CRD_BUDGET = {
    "generations": "generations",
    "candidates": "candidatesPerGeneration",
    "validation_rounds": "validationRounds",
    "steps_per_round": "stepsPerRound",
    "batch_size": "batchSize",
    "max_validation_examples": "maxValidationExamples",
}


@pytest.mark.parametrize(
    ("crd", "path"),
    [(TI, ("spec", "budget")), (MTS, ("spec", "defaults", "budget"))],
    ids=["ti", "mts-defaults"],
)
def test_budget_bounds_are_the_trainers(crd: dict[str, Any], path: tuple[str, ...]) -> None:
    props = _prop(crd, *path)["properties"]
    for field, crd_name in CRD_BUDGET.items():
        assert (props[crd_name]["minimum"], props[crd_name]["maximum"]) == (
            0 if field == "steps_per_round" else 1,
            limits.BUDGET_MAX[field],
        ), field
    assert props["epochs"]["maximum"] == limits.EPOCHS_MAX


def test_other_bounds_are_the_trainers() -> None:
    assert _prop(TI, "spec", "seed")["maximum"] == limits.SEED_MAX
    assert _prop(TI, "spec", "search", "populationCap")["maximum"] == limits.POPULATION_CAP_MAX
    size = _prop(MTS, "spec", "rootModel", "imageSize")
    assert (size["minimum"], size["maximum"]) == (0, limits.IMAGE_SIZE_MAX)  # 0: the data's own
    (rule,) = size["x-kubernetes-validations"]
    assert rule["rule"] == f"self == 0 || self >= {limits.IMAGE_SIZE_MIN}"
    epochs = _prop(MTS, "spec", "rootModel", "maxEpochs")
    assert epochs["maximum"] == limits.EPOCHS_MAX


def test_presets_and_their_patch_sizes_are_the_registrys() -> None:
    preset = _prop(MTS, "spec", "rootModel", "preset")
    assert sorted(preset["enum"]) == list_presets()
    rule = next(
        r["rule"]
        for r in _prop(MTS, "spec", "rootModel")["x-kubernetes-validations"]
        if "imageSize %" in r["rule"]
    )
    small = re.search(r"in \[([^\]]*)\]", rule)
    assert small is not None
    four = {p.strip(" '") for p in small.group(1).split(",")}
    for name in list_presets():
        assert get_shape(name, 224 if name not in four else 16).patch == (4 if name in four else 16)


def test_tpu_single_host_table_multiplies_out() -> None:
    for crd, path in ((TI, ("spec", "accelerator")), (MTS, ("spec", "defaults", "accelerator"))):
        rule = next(
            r["rule"]
            for r in _prop(crd, *path)["x-kubernetes-validations"]
            if "topology in" in r["rule"]
        )
        table = dict(re.findall(r"'([0-9x]+)': ([0-9]+)", rule))
        assert table and all(int(chips) == _product(topo) <= 8 for topo, chips in table.items()), (
            table
        )


def _product(topology: str) -> int:
    out = 1
    for dim in topology.split("x"):
        out *= int(dim)
    return out


SPLITS = [
    "train",
    "test",
    "train[:90%]",
    "train[90%:]",
    "train[-5%:]",
    "train[:-5%]",
    "test[:1000]",
    "test[10:200]",
    "train[:90%]+test[:10]",
    "train[2.5%:]",
    "train[:100%]",
    "train[:100.0%]",
    "train[abc]",
    "",
    "test[:150%]",
    "train[1.5:]",
    "train[1:2:3]",
    "train[:10",
    "train+",
    "+train",
    "tr ain",
    "train[:101%]",
    "train[-100%:]",
    "train[:-100.5%]",
    "x_y-z[3:]",
    "[:5]",
]


@pytest.mark.parametrize("spec", SPLITS)
def test_the_split_pattern_accepts_what_the_trainer_parses(spec: str) -> None:
    try:
        parse_split(spec)
        parsed = True
    except DatasetError:
        parsed = False
    assert bool(re.match(limits.SPLIT_PATTERN, spec)) == parsed, spec


def test_the_bootstrap_dataset_rule_names_its_own_field() -> None:
    old = mts(rootModel={"bootstrap": {"task": "d", "dataset": {"uri": "digits"}}})
    new = copy.deepcopy(old)
    new["spec"]["rootModel"]["bootstrap"]["dataset"]["uri"] = "mnist"
    errors = cel_errors(MTS, new, old=old)
    assert "spec.rootModel.bootstrap.dataset is immutable" in errors
    assert "spec.dataset is immutable" not in errors


def _walk(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for name, sub in (node.get("properties") or {}).items():
        out += _walk(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            out += _walk(node[key], f"{path}[]")
    return out


@pytest.mark.parametrize("crd", [TI, MTS], ids=["ti", "mts"])
def test_cel_inputs_are_bounded(crd: dict[str, Any]) -> None:
    """The apiserver estimates a rule's cost from the sizes it may see: every list, map and
    string a spec rule can reach has a maximum size (or an enum)."""
    for path, node in _walk(version_schema(crd)["properties"]["spec"], "spec"):
        kind = node.get("type")
        if kind == "array":
            assert "maxItems" in node, path
        elif kind == "object" and isinstance(node.get("additionalProperties"), dict):
            assert "maxProperties" in node or path.startswith("spec.resources"), path
        elif kind == "string":
            assert "maxLength" in node or "enum" in node or "pattern" in node, path
