"""config.py: the JSON form of IntroduceConfig and its validation messages."""

from __future__ import annotations

import dataclasses
import json

import pytest

from mutask.trainer.config import (
    BudgetConfig,
    ConfigError,
    DatasetConfig,
    IntroduceConfig,
    SearchConfig,
)
from mutask.trainer.evolution.hparams import DEPTH
from mutask.trainer.iteration.generation import search_space
from mutask.trainer.models import get_shape


def _json(**overrides: object) -> str:
    return json.dumps({"task": "digits", **overrides})


def test_json_round_trip_is_exact() -> None:
    cfg = IntroduceConfig(
        task="private:x",
        dataset=DatasetConfig(source="mnist", label_map={"3": 0, "5": 1}, transform="rot90"),
        budget=BudgetConfig(generations=3, batch_size=16),
        search=SearchConfig(size_scale=0.5, adapters=False),
        metrics_port=9090,
    )
    assert IntroduceConfig.from_json(cfg.to_json()) == cfg


def test_configs_are_frozen() -> None:
    cfg = IntroduceConfig("digits")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.budget.generations = 1  # type: ignore[misc]


def test_search_space_honours_tune_depth() -> None:
    shape = get_shape("mu-tiny", 16)
    assert DEPTH in search_space(IntroduceConfig("digits"), shape).ladders
    fixed = search_space(IntroduceConfig("digits", search=SearchConfig(tune_depth=False)), shape)
    assert DEPTH not in fixed.ladders and fixed.defaults()[DEPTH] == shape.depth


def test_only_task_is_required() -> None:
    assert IntroduceConfig.from_json(_json()) == IntroduceConfig(task="digits")


def test_integers_are_accepted_for_float_fields() -> None:
    assert IntroduceConfig.from_json(_json(search={"size_scale": 1})).search.size_scale == 1.0


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ({"budget": {"generationz": 3}}, "budget.generationz"),
        ({"dataset": {"lables": [1]}}, "dataset.lables"),
        ({"extra": 1}, "extra"),
    ],
)
def test_unknown_fields_are_named_by_dotted_path(doc: dict, field: str) -> None:
    with pytest.raises(ConfigError, match="unknown field") as err:
        IntroduceConfig.from_json(_json(**doc))
    assert err.value.field_path == field


@pytest.mark.parametrize(
    ("doc", "field", "why"),
    [
        ({"budget": {"generations": "3"}}, "budget.generations", "must be an integer"),
        ({"budget": {"generations": True}}, "budget.generations", "must be an integer"),
        ({"search": {"adapters": "yes"}}, "search.adapters", "must be true or false"),
        ({"search": {"size_scale": "0.5"}}, "search.size_scale", "must be a number"),
        ({"dataset": {"labels": [1, "2"]}}, "dataset.labels[1]", "must be an integer"),
        ({"dataset": {"label_map": {"3": "x"}}}, "dataset.label_map.3", "must be an integer"),
        ({"budget": 5}, "budget", "must be an object"),
        ({"seed": None}, "seed", "must be an integer"),
        ({"dataset": {"source": None}}, "dataset.source", "must be a string"),
        ({"workers": "2"}, "workers", "must be an integer"),
        ({"workers": 0}, "workers", "must be an integer in 1..1,024"),
    ],
)
def test_wrong_types_are_named(doc: dict, field: str, why: str) -> None:
    with pytest.raises(ConfigError, match=why) as err:
        IntroduceConfig.from_json(_json(**doc))
    assert err.value.field_path == field


def test_missing_task_is_reported() -> None:
    with pytest.raises(ConfigError, match="task"):
        IntroduceConfig.from_json("{}")


@pytest.mark.parametrize("text", ["{not json", "[1, 2]"])
def test_non_object_json_is_rejected(text: str) -> None:
    with pytest.raises(ConfigError) as err:
        IntroduceConfig.from_json(text)
    assert err.value.field_path == "<config>"


@pytest.mark.parametrize(
    ("cfg", "field", "value"),
    [
        (IntroduceConfig("digits", search=SearchConfig(size_scale=0.0)), "search.size_scale", 0.0),
        (IntroduceConfig("digits", search=SearchConfig(size_scale=1.5)), "search.size_scale", 1.5),
        (IntroduceConfig("digits", device="gpu"), "device", "gpu"),
        (IntroduceConfig("digits", precision="fp16"), "precision", "fp16"),
        (IntroduceConfig("digits", budget=BudgetConfig(candidates=0)), "budget.candidates", 0),
        (IntroduceConfig("digits", metrics_port=70000), "metrics_port", 70000),
        (
            IntroduceConfig("digits", search=SearchConfig(population_cap=0)),
            "search.population_cap",
            0,
        ),
    ],
)
def test_validate_names_the_field_and_the_value(
    cfg: IntroduceConfig, field: str, value: object
) -> None:
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    assert (err.value.field_path, err.value.value) == (field, value)
    assert str(err.value).startswith(f"{field}={value!r}: ")


@pytest.mark.parametrize(
    "name", ["Digits", "Bad_Name", "a" * 64, "", "-x", "x-", "private:", "public:x", "a b"]
)
def test_bad_task_names_are_rejected(name: str) -> None:
    with pytest.raises(ConfigError) as err:
        IntroduceConfig(name).validate()
    assert (err.value.field_path, err.value.value) == ("task", name)


@pytest.mark.parametrize("name", ["private:x", "a", "a" * 63, "mnist_rot90", "cifar-10.v2"])
def test_good_task_names_are_accepted(name: str) -> None:
    assert IntroduceConfig(name).validate().task == name


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda", "cuda:1", "xla"])
def test_known_devices_are_accepted(device: str) -> None:
    IntroduceConfig("digits", device=device).validate()


def test_labels_and_label_map_together_are_rejected() -> None:
    cfg = IntroduceConfig("digits", dataset=DatasetConfig(labels=[0, 1], label_map={"0": 0}))
    with pytest.raises(ConfigError, match="either labels or label_map") as err:
        cfg.validate()
    assert err.value.field_path == "dataset.labels"


def test_from_json_validates() -> None:
    with pytest.raises(ConfigError) as err:
        IntroduceConfig.from_json(_json(search={"size_scale": 0}))
    assert err.value.field_path == "search.size_scale"
