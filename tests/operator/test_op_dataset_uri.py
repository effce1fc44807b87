"""The operator passes a dataset URI to the trainer unchanged, whatever its form, and the CRD
accepts every form the trainer reads (image folders, shards, Hugging Face, .npz, built-ins)."""

from __future__ import annotations

import json

import pytest
from op_crdtools import all_errors
from op_samples import INTRO, SYSTEM, load_crd, merged

from mutask.operator.config_builder import build_configmap
from mutask.operator.settings import Settings
from mutask.operator.spec import parse_introduction, parse_system

URIS = [
    "digits",
    "gs://bucket/datasets/pets",
    "gs://bucket/cifar10/train-{000000..000031}.tar",
    "gs://bucket/shards/*.tar",
    "gs://bucket/hf/cifar10",
    "gs://bucket/hf/cifar10/data/train-00000-of-00001.parquet",
    "file:///data/imagenet",
    "/data/pets.npz",
]


@pytest.mark.parametrize("uri", URIS)
def test_dataset_uri_reaches_the_trainer_unchanged(uri: str) -> None:
    intro = merged(INTRO, dataset={"uri": uri})
    assert all_errors(load_crd("taskintroductions"), intro) == []
    cm = build_configmap(parse_system(SYSTEM), parse_introduction(intro), Settings())
    config = json.loads(cm["data"]["config.json"])
    assert config["dataset"]["source"] == uri


def test_split_defaults_are_auto_in_the_crd() -> None:
    props = load_crd("taskintroductions")["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    dataset = props["properties"]["spec"]["properties"]["dataset"]["properties"]
    assert dataset["trainSplit"]["default"] == dataset["validationSplit"]["default"] == "auto"
    assert "gs://" in dataset["uri"]["description"] and "Parquet" in dataset["uri"]["description"]
