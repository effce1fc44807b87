"""CRD tests: structure, samples valid against the CRDs' own schemas and CEL rules, bad specs
rejected with the field named, immutability (transition rules with oldSelf)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from op_crd_cases import (
    BAD_MTS,
    BAD_PVC,
    BAD_TI,
    FILE_NEEDS_PVC,
    IMMUTABLE_TI,
    mts,
    ti,
)
from op_crdtools import all_errors, cel_errors, rules, schema_errors, version_schema
from op_samples import ROOT, load_crd

from mutask.operator.config_builder import build_configmap
from mutask.operator.settings import Settings
from mutask.operator.spec import parse_introduction, parse_system
from mutask.trainer.config import IntroduceConfig

TI = load_crd("taskintroductions")
MTS = load_crd("multitasksystems")
CRDS = {"TaskIntroduction": TI, "MultitaskSystem": MTS}
SAMPLES = sorted((ROOT / "manifests" / "samples").glob("*.yaml"))


def sample_docs() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in SAMPLES:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["apiVersion"].startswith("mutask.dev/"):  # not the sample PVC
                docs.append((path.name, doc))
    return docs


def test_file_store_samples_have_their_claim() -> None:
    """Every file:// sample system names a PersistentVolumeClaim that a sample defines."""
    docs = [d for p in SAMPLES for d in yaml.safe_load_all(p.read_text()) if d]
    claims = {
        (d["metadata"]["namespace"], d["metadata"]["name"])
        for d in docs
        if d["kind"] == "PersistentVolumeClaim"
    }
    systems = [
        d
        for d in docs
        if d["kind"] == "MultitaskSystem" and d["spec"]["storage"]["uri"].startswith("file://")
    ]
    assert systems
    for d in systems:
        claim = d["spec"]["storage"]["persistentVolumeClaim"]["claimName"]
        assert (d["metadata"]["namespace"], claim) in claims


def test_crd_structure() -> None:
    for plural, crd, short in (("taskintroductions", TI, "ti"), ("multitasksystems", MTS, "mts")):
        spec = crd["spec"]
        assert crd["metadata"]["name"] == f"{plural}.mutask.dev"
        assert spec["group"] == "mutask.dev" and spec["scope"] == "Namespaced"
        assert short in spec["names"]["shortNames"]
        (version,) = spec["versions"]
        assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
        assert version["subresources"] == {"status": {}}
        assert version["schema"]["openAPIV3Schema"]["type"] == "object"
    assert "mutask" in TI["spec"]["names"]["categories"]
    columns = {
        c["name"]: c["jsonPath"] for c in TI["spec"]["versions"][0]["additionalPrinterColumns"]
    }
    assert columns["Condition"] == ".status.phase"
    assert columns["Generation"] == ".status.generationProgress"
    assert columns["Best Score"] == ".status.progress.bestScore"
    assert columns["Accuracy"] == ".status.progress.bestAccuracy"
    assert columns["Params Added"] == ".status.progress.paramsAdded"
    assert columns["Age"] == ".metadata.creationTimestamp"


def _walk(node: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = [(path, node)]
    for name, sub in (node.get("properties") or {}).items():
        out += _walk(sub, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        out += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        out += _walk(node["additionalProperties"], f"{path}{{}}")
    return out


@pytest.mark.parametrize("crd", [TI, MTS], ids=["ti", "mts"])
def test_structural_schema(crd: dict[str, Any]) -> None:
    """Every node has a type (or int-or-string / preserve-unknown); spec fields are described."""
    for path, node in _walk(version_schema(crd)):
        assert "type" in node or node.get("x-kubernetes-int-or-string"), path
        if path.startswith(".spec.") and path.count(".") == 2:
            assert node.get("description"), f"{path} has no description"


def test_shared_blocks_identical() -> None:
    """The accelerator/dataset schemas of both CRDs agree (the MTS ones are defaults)."""
    ti_spec = version_schema(TI)["properties"]["spec"]["properties"]
    mts_spec = version_schema(MTS)["properties"]["spec"]["properties"]
    a, b = (
        ti_spec["accelerator"]["properties"],
        mts_spec["defaults"]["properties"]["accelerator"]["properties"],
    )
    assert a == b
    d1 = ti_spec["dataset"]["properties"]
    d2 = mts_spec["rootModel"]["properties"]["bootstrap"]["properties"]["dataset"]["properties"]
    assert d1 == d2


@pytest.mark.parametrize(("name", "doc"), sample_docs(), ids=[n for n, _ in sample_docs()])
def test_samples_validate(name: str, doc: dict[str, Any]) -> None:
    crd = CRDS[doc["kind"]]
    assert doc["apiVersion"] == "mutask.dev/v1alpha1"
    assert all_errors(crd, doc) == []
    assert cel_errors(crd, doc, old=doc) == []  # an unchanged update passes the transition rules


def test_every_sample_renders_a_valid_trainer_config() -> None:
    systems = {d["metadata"]["name"]: d for _, d in sample_docs() if d["kind"] == "MultitaskSystem"}
    for _, doc in sample_docs():
        if doc["kind"] != "TaskIntroduction":
            continue
        system = systems[doc["spec"]["systemRef"]["name"]]
        cm = build_configmap(parse_system(system), parse_introduction(doc), Settings())
        IntroduceConfig.from_json(cm["data"]["config.json"])


@pytest.mark.parametrize(("spec", "field"), [b[1:] for b in BAD_TI], ids=[b[0] for b in BAD_TI])
def test_bad_introductions_rejected_naming_the_field(spec: dict[str, Any], field: str) -> None:
    errors = all_errors(TI, ti(**spec))
    assert errors, "expected a rejection"
    assert any(field in e or field.replace("spec.", "") in e for e in errors), errors


def test_missing_required_fields() -> None:
    doc = ti()
    del doc["spec"]["dataset"]
    assert any("dataset" in e for e in schema_errors(TI, doc))


@pytest.mark.parametrize(("path", "value", "message"), IMMUTABLE_TI)
def test_immutable_fields(path: tuple[str, ...], value: Any, message: str) -> None:
    old = ti(queueName="q")
    new = copy.deepcopy(old)
    new["spec"][path[0]] = value
    assert message in cel_errors(TI, new, old=old)
    assert cel_errors(TI, new) == []  # creation: no oldSelf, no transition rule


def test_mutable_fields_may_change() -> None:
    old = ti()
    new = ti(suspend=True, budget={"generations": 9})
    assert cel_errors(TI, new, old=old) == []


@pytest.mark.parametrize(("spec", "field"), BAD_MTS)
def test_bad_systems_rejected(spec: dict[str, Any], field: str) -> None:
    errors = all_errors(MTS, mts(**spec))
    assert any(field in e for e in errors), errors


def test_system_storage_immutable() -> None:
    old = mts()
    new = mts(storage={"uri": "gs://other/p"})
    assert "spec.storage.uri is immutable" in cel_errors(MTS, new, old=old)


@pytest.mark.parametrize(
    ("storage", "expected"),
    [
        ({"uri": "file:///var/lib/mutask/tiny"}, [FILE_NEEDS_PVC]),
        ({"uri": "file:///s", "persistentVolumeClaim": {"claimName": "store"}}, []),
        ({"uri": "gs://bucket/p"}, []),
        ({"uri": "gs://bucket/p", "persistentVolumeClaim": {"claimName": "store"}}, []),
    ],
    ids=["file-without-pvc", "file-with-pvc", "gs", "gs-with-pvc"],
)
def test_file_storage_requires_pvc(storage: dict[str, Any], expected: list[str]) -> None:
    assert cel_errors(MTS, mts(storage=storage)) == expected
    assert schema_errors(MTS, mts(storage=storage)) == []


@pytest.mark.parametrize(("pvc", "field"), [c[1:] for c in BAD_PVC], ids=[c[0] for c in BAD_PVC])
def test_bad_pvc_rejected(pvc: dict[str, Any], field: str) -> None:
    errors = schema_errors(MTS, mts(storage={"uri": "file:///s", "persistentVolumeClaim": pvc}))
    assert any(field in e for e in errors), errors


def test_system_pvc_immutable() -> None:
    old = mts(storage={"uri": "file:///s", "persistentVolumeClaim": {"claimName": "a"}})
    new = mts(storage={"uri": "file:///s", "persistentVolumeClaim": {"claimName": "b"}})
    assert cel_errors(MTS, new, old=old) == ["spec.storage.persistentVolumeClaim is immutable"]
    gone = mts(storage={"uri": "file:///s"})
    assert FILE_NEEDS_PVC in cel_errors(MTS, gone, old=old)  # nor removed from a file:// store


def test_every_rule_compiles_and_has_message() -> None:
    for crd in (TI, MTS):
        for r in rules(version_schema(crd)):
            assert r.message.startswith("spec."), r
            cel_errors(crd, {"spec": {}})  # compiles every rule reachable


def test_crd_files_are_self_contained(tmp_path: Path) -> None:
    for path in (ROOT / "manifests" / "crds").glob("*.yaml"):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert len(docs) == 1 and docs[0]["kind"] == "CustomResourceDefinition"
