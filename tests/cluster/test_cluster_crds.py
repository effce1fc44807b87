"""Every invalid object the offline CRD tests reject (tests/operator/op_crd_cases.py, and the
limits the trainer would refuse, tests/operator/op_crd_limits.py) is rejected by the real
kube-apiserver too, with the field named: OpenAPI schema, CEL rules (including the transition
rules on update) and strict field validation, as ``kubectl apply`` reports them. The limits'
near misses are accepted."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from controlplane import ControlPlane
from op_crd_cases import BAD_MTS, BAD_PVC, BAD_TI, FILE_NEEDS_PVC, IMMUTABLE_TI, mts, ti
from op_crd_limits import GOOD_MTS, GOOD_TI, LIMIT_MTS, LIMIT_TI


@pytest.fixture(scope="module")
def ns(cp: ControlPlane, chart: dict[str, Any]) -> Iterator[str]:
    name = f"crd-cases-{uuid.uuid4().hex[:5]}"
    cp.kubectl("create", "namespace", name)
    yield name
    cp.kubectl("delete", "namespace", name, "--wait=false", check=False)


def rejection(cp: ControlPlane, obj: dict[str, Any], *, dry_run: bool = True) -> str:
    """kubectl apply ``obj``; return the apiserver's error (fails the test if it was accepted)."""
    args = ["apply", "-f", "-"] + (["--dry-run=server"] if dry_run else [])
    proc = cp.kubectl(*args, input=json.dumps(obj), check=False)
    assert proc.returncode != 0, f"the apiserver accepted {obj['spec']}: {proc.stdout}"
    return proc.stderr


def in_ns(obj: dict[str, Any], ns: str) -> dict[str, Any]:
    obj = copy.deepcopy(obj)
    obj["metadata"]["namespace"] = ns
    return obj


@pytest.mark.parametrize(("spec", "field"), [b[1:] for b in BAD_TI], ids=[b[0] for b in BAD_TI])
def test_bad_introductions_rejected(
    cp: ControlPlane, ns: str, spec: dict[str, Any], field: str
) -> None:
    err = rejection(cp, in_ns(ti(**spec), ns))
    assert field in err or field.replace("spec.", "") in err, err


@pytest.mark.parametrize(("spec", "field"), BAD_MTS)
def test_bad_systems_rejected(cp: ControlPlane, ns: str, spec: dict[str, Any], field: str) -> None:
    assert field in rejection(cp, in_ns(mts(**spec), ns))


@pytest.mark.parametrize(("pvc", "field"), [c[1:] for c in BAD_PVC], ids=[c[0] for c in BAD_PVC])
def test_bad_claims_rejected(cp: ControlPlane, ns: str, pvc: dict[str, Any], field: str) -> None:
    storage = {"uri": "file:///s", "persistentVolumeClaim": pvc}
    assert field in rejection(cp, in_ns(mts(storage=storage), ns))


def _named(field: str, err: str) -> bool:
    return field in err or field.replace("spec.", "") in err


@pytest.mark.parametrize(("spec", "field"), [c[1:] for c in LIMIT_TI], ids=[c[0] for c in LIMIT_TI])
def test_introductions_beyond_the_trainers_limits_rejected(
    cp: ControlPlane, ns: str, spec: dict[str, Any], field: str
) -> None:
    err = rejection(cp, in_ns(ti(**spec), ns))
    assert _named(field, err), err


@pytest.mark.parametrize(
    ("spec", "field"), [c[1:] for c in LIMIT_MTS], ids=[c[0] for c in LIMIT_MTS]
)
def test_systems_beyond_the_trainers_limits_rejected(
    cp: ControlPlane, ns: str, spec: dict[str, Any], field: str
) -> None:
    err = rejection(cp, in_ns(mts(**spec), ns))
    assert _named(field, err), err


@pytest.mark.parametrize("spec", [c[1] for c in GOOD_TI], ids=[c[0] for c in GOOD_TI])
def test_near_miss_introductions_accepted(cp: ControlPlane, ns: str, spec: dict[str, Any]) -> None:
    cp.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(in_ns(ti(**spec), ns)))


@pytest.mark.parametrize("spec", [c[1] for c in GOOD_MTS], ids=[c[0] for c in GOOD_MTS])
def test_near_miss_systems_accepted(cp: ControlPlane, ns: str, spec: dict[str, Any]) -> None:
    cp.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(in_ns(mts(**spec), ns)))


def test_file_store_needs_a_claim(cp: ControlPlane, ns: str) -> None:
    assert FILE_NEEDS_PVC in rejection(cp, in_ns(mts(storage={"uri": "file:///s"}), ns))


def test_valid_objects_accepted(cp: ControlPlane, ns: str) -> None:
    """The base objects of the cases are valid: each rejection is the case's own doing."""
    for obj in (
        ti(),
        mts(),
        mts(storage={"uri": "file:///s", "persistentVolumeClaim": {"claimName": "c"}}),
    ):
        cp.kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(in_ns(obj, ns)))


@pytest.mark.parametrize(("path", "value", "message"), IMMUTABLE_TI)
def test_immutable_fields(
    cp: ControlPlane, ns: str, path: tuple[str, ...], value: Any, message: str
) -> None:
    obj = in_ns(ti(queueName="q"), ns)
    obj["metadata"]["name"] = f"imm-{path[0].lower()}"
    cp.kubectl("apply", "-f", "-", input=json.dumps(obj))
    changed = copy.deepcopy(obj)
    changed["spec"][path[0]] = value
    assert message in rejection(cp, changed, dry_run=False)
    mutable = copy.deepcopy(obj)
    mutable["spec"]["suspend"] = True
    cp.kubectl("apply", "-f", "-", input=json.dumps(mutable))  # mutable fields may change


def test_system_storage_immutable(cp: ControlPlane, ns: str) -> None:
    obj = in_ns(mts(), ns)
    obj["metadata"]["name"] = "imm-storage"
    cp.kubectl("apply", "-f", "-", input=json.dumps(obj))
    changed = copy.deepcopy(obj)
    changed["spec"]["storage"]["uri"] = "gs://other/p"
    assert "spec.storage.uri is immutable" in rejection(cp, changed, dry_run=False)


def test_status_is_a_subresource(cp: ControlPlane, ns: str) -> None:
    """A spec write cannot change status and a status write cannot change spec (the split the
    operator and the trainer rely on to never overwrite each other)."""
    obj = in_ns(ti(), ns)
    obj["metadata"]["name"] = "status-split"
    cp.kubectl("apply", "-f", "-", input=json.dumps(obj))
    patch = json.dumps({"spec": {"seed": 5}, "status": {"phase": "Running"}})
    cp.kubectl("patch", "ti", "status-split", "-n", ns, "--type=merge", "-p", patch)
    got = json.loads(cp.kubectl("get", "ti", "status-split", "-n", ns, "-o", "json").stdout)
    assert got["spec"]["seed"] == 5 and "phase" not in (got.get("status") or {})
    cp.kubectl(
        "patch",
        "ti",
        "status-split",
        "-n",
        ns,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"spec": {"seed": 9}, "status": {"phase": "Running"}}),
    )
    got = json.loads(cp.kubectl("get", "ti", "status-split", "-n", ns, "-o", "json").stdout)
    assert got["spec"]["seed"] == 5 and got["status"]["phase"] == "Running"
