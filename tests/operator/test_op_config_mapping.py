"""Every CRD property either reaches the trainer config (round trip: CRD value -> config.json ->
the same value) or is listed as operator-only; a property that is silently dropped fails here.

The walk covers every property of both CRDs' ``spec`` schemas; the values are generated from
each property's schema (bounds, patterns) and differ from the sample's and the trainer's
defaults, so a value that does not arrive cannot pass by accident.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest
from op_crdtools import to_jsonschema, version_schema
from op_samples import INTRO, SYSTEM, load_crd

from mutask import contract
from mutask.operator import config_builder as cb
from mutask.operator.settings import Settings
from mutask.operator.spec import bootstrap_introduction, parse_introduction, parse_system
from mutask.trainer.config import IntroduceConfig

CRDS = {
    contract.TI_KIND: load_crd("taskintroductions"),
    contract.MTS_KIND: load_crd("multitasksystems"),
}
BASES = {contract.TI_KIND: INTRO, contract.MTS_KIND: SYSTEM}
BOOT = {"task": "digits", "dataset": {"uri": "digits"}}

# Valid examples of strings the CRD constrains by pattern or the trainer by meaning.
STRINGS = {
    "task": ["svhn-x"],
    "uri": ["gs://bucket-x/data.npz"],
    "trainSplit": ["train[:70%]"],
    "validationSplit": ["train[70%:]"],
    "testSplit": ["test[:50%]"],
    "transform": ["rot90", "flip_lr"],
    "preset": ["s16", "ti16"],
    "weightsURI": ["gs://bucket-x/w.safetensors"],
}


def leaves(node: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every property below ``node`` that has no properties of its own (objects with
    additionalProperties and arrays are values)."""
    props = node.get("properties")
    if not props:
        yield path, node
        return
    for name, sub in props.items():
        yield from leaves(sub, f"{path}.{name}")


def crd_leaves(kind: str) -> list[tuple[str, dict[str, Any]]]:
    spec = version_schema(CRDS[kind])["properties"]["spec"]
    return list(leaves(spec, "spec"))


ALL_LEAVES = [(kind, path, node) for kind in CRDS for path, node in crd_leaves(kind)]


def get(data: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def put(body: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    for key in parents:
        body = body.setdefault(key, {})
    body[leaf] = value


def config_default(config_path: str) -> Any:
    """The trainer's own default of a config field (``None`` when it has none)."""
    cls: Any = IntroduceConfig
    value: Any = None
    for key in config_path.split("."):
        f = {f.name: f for f in dataclasses.fields(cls)}[key]
        if f.default is not dataclasses.MISSING:
            value = f.default
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
        else:
            value = None
        cls = typing.get_type_hints(cls)[key]
    return value


def example(path: str, node: dict[str, Any], avoid: list[Any]) -> Any:
    """A value valid for the property's schema that is in none of ``avoid``."""
    leaf = path.rsplit(".", 1)[-1]
    kind = node.get("type")
    candidates: list[Any] = {
        "string": STRINGS.get(leaf, [f"value-of-{leaf}"]),
        "integer": [7, 3, 13, 99, node.get("minimum", 1), node.get("maximum", 1)],
        "number": [0.25, 0.5, 0.75],
        "boolean": [True, False],
        "array": [[3, 5]],
        "object": [{"3": 0, "5": 1}],
    }[str(kind)]
    validator = jsonschema.Draft202012Validator(to_jsonschema(node))
    for value in candidates:
        if validator.is_valid(value) and not any(
            value == a and type(value) is type(a) for a in avoid
        ):
            return value
    raise AssertionError(f"no example for {path} avoiding {avoid}: add one to STRINGS")


def operator_only(kind: str, path: str) -> bool:
    return any(path == p or path.startswith(p + ".") for p in cb.OPERATOR_ONLY[kind])


def route_of(kind: str, path: str) -> cb.Route | None:
    found = [r for r in cb.routes() if (r.kind, r.crd) == (kind, path)]
    assert len(found) <= 1, found
    return found[0] if found else None


def built(intro: dict[str, Any], system: dict[str, Any], bootstrap: bool) -> dict[str, Any]:
    s = parse_system(system)
    i = bootstrap_introduction(s) if bootstrap else parse_introduction(intro)
    return cb.build_config(s, i, Settings(), bootstrap_root=bootstrap).to_dict()


@pytest.mark.parametrize(
    ("kind", "path", "node"), ALL_LEAVES, ids=[f"{k}:{p}" for k, p, _ in ALL_LEAVES]
)
def test_every_crd_field_reaches_the_config_or_is_operator_only(
    kind: str, path: str, node: dict[str, Any]
) -> None:
    route = route_of(kind, path)
    if (kind, path) in cb.ACCELERATOR_TYPE:  # translated one to one: round trip via DEVICES
        assert route is None
        inverse = {device: name for name, device in cb.DEVICES.items()}
        for value in node["enum"]:
            bodies = {k: copy.deepcopy(b) for k, b in BASES.items()}
            put(bodies[kind], path, value)
            config = built(bodies[contract.TI_KIND], bodies[contract.MTS_KIND], bootstrap=False)
            assert inverse[config["device"]] == value
        return
    if operator_only(kind, path):
        assert route is None, f"{path} is listed as operator-only but reaches {route}"
        return
    assert route is not None, (
        f"{kind} {path} neither reaches the trainer config nor is listed in OPERATOR_ONLY"
    )
    bodies = {k: copy.deepcopy(b) for k, b in BASES.items()}
    if route.bootstrap:
        put(bodies[contract.MTS_KIND], "spec.rootModel.bootstrap", copy.deepcopy(BOOT))
    before = get(bodies[kind], path)
    value = example(path, node, [before, config_default(route.config), node.get("default")])
    put(bodies[kind], path, value)
    config = built(bodies[contract.TI_KIND], bodies[contract.MTS_KIND], route.bootstrap)
    assert get(config, route.config) == value, (path, route.config)
    assert IntroduceConfig.from_dict(config).to_dict() == config  # and it is a valid config


def config_leaves(cls: Any = IntroduceConfig, prefix: str = "") -> Iterator[str]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            yield from config_leaves(hint, f"{prefix}{f.name}.")
        else:
            yield prefix + f.name


def test_every_config_field_comes_from_the_crd_or_the_operator() -> None:
    existing = {(k, p) for k, p, _ in ALL_LEAVES}
    reached = {r.config for r in cb.routes() if (r.kind, r.crd) in existing}
    for leaf in config_leaves():
        assert leaf in reached or leaf in cb.OPERATOR_SET, f"config field {leaf} has no source"
    assert set(cb.OPERATOR_SET) <= set(config_leaves())


def test_tables_name_real_fields() -> None:
    """No stale entries: every operator-only prefix and accelerator path is in the CRDs."""
    for kind, prefixes in cb.OPERATOR_ONLY.items():
        paths = [p for p, _ in crd_leaves(kind)]
        for prefix in prefixes:
            assert any(p == prefix or p.startswith(prefix + ".") for p in paths), prefix
    existing = {(k, p) for k, p, _ in ALL_LEAVES}
    assert set(cb.ACCELERATOR_TYPE) <= existing
    for (cls, field), name in cb.RENAMED.items():
        assert field in {f.name for f in dataclasses.fields(cls)}
        assert any(p.endswith("." + name) for _, p, _ in ALL_LEAVES), name


def test_names_are_derived() -> None:
    assert cb.camel("max_validation_examples") == "maxValidationExamples"
    routes = {(r.kind, r.crd): r.config for r in cb.routes()}
    assert routes[(contract.TI_KIND, "spec.budget.stepsPerRound")] == "budget.steps_per_round"
    assert routes[(contract.TI_KIND, "spec.budget.candidatesPerGeneration")] == "budget.candidates"
    assert routes[(contract.MTS_KIND, "spec.rootModel.imageSize")] == "model.image_size"
    assert routes[(contract.MTS_KIND, "spec.rootModel.bootstrap.dataset.uri")] == "dataset.source"
