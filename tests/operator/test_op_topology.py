"""Hosts of an accelerator (operator/topology.py) and the CRDs' CEL rules that carry the same
GKE slice table: every accelerator's topologies and chips per host, in both CRDs."""

from __future__ import annotations

import re
from typing import Any

import pytest
from op_crd_limits import cpu_nodes, gpu_nodes, ti, tpu
from op_crdtools import cel_errors
from op_samples import load_crd

from mutask.operator.spec import Accelerator, parse_accelerator
from mutask.operator.topology import (
    MULTI_HOST_CHIPS,
    TPU_SLICES,
    TopologyError,
    chips_of,
    tpu_hosts,
)

TI = load_crd("taskintroductions")
MTS = load_crd("multitasksystems")


def _rules(crd: dict[str, Any], *path: str) -> list[dict[str, Any]]:
    node = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for key in path:
        node = node["properties"][key]
    rules: list[dict[str, Any]] = node["x-kubernetes-validations"]
    return rules


@pytest.mark.parametrize(
    ("crd", "path"), [(TI, ("spec", "accelerator")), (MTS, ("spec", "defaults", "accelerator"))]
)
def test_the_crds_carry_the_slice_table(crd: dict[str, Any], path: tuple[str, ...]) -> None:
    rules = _rules(crd, *path)
    for accelerator, table in TPU_SLICES.items():
        (rule,) = [r for r in rules if f"self.tpu.accelerator != '{accelerator}'" in r["rule"]]
        listed = re.findall(r"'([0-9x]+)'", rule["rule"].split(" in ", 1)[1])
        assert listed == list(table), accelerator
        for topology in table:
            assert topology in rule["message"]
    (chips,) = [r for r in rules if r.get("fieldPath") == ".tpu.chips" and "][" in r["rule"]]
    literal = chips["rule"].split(" in ", 1)[1].split(")", 1)[0]
    nested = {
        acc: dict((t, int(c)) for t, c in re.findall(r"'([0-9x]+)': ([0-9]+)", body))
        for acc, body in re.findall(r"'(tpu-[a-z0-9-]+)': \{([^}]*)\}", literal)
    }
    assert nested == {a: dict(t) for a, t in TPU_SLICES.items()}


def test_every_multi_host_slice_has_hosts_of_the_same_chips() -> None:
    for accelerator, table in TPU_SLICES.items():
        for topology, per_host in table.items():
            hosts = tpu_hosts(accelerator, topology, per_host, "spec.accelerator")
            assert hosts * per_host == chips_of(topology)
            assert per_host == chips_of(topology) or per_host == MULTI_HOST_CHIPS


@pytest.mark.parametrize(
    ("accelerator", "topology", "chips", "hosts"),
    [
        ("tpu-v5-lite-podslice", "2x4", 8, 1),
        ("tpu-v5-lite-podslice", "4x4", 4, 4),
        ("tpu-v5-lite-podslice", "16x16", 4, 64),
        ("tpu-v6e-slice", "4x8", 4, 8),
        ("tpu-v5p-slice", "2x2x1", 4, 1),
        ("tpu-v5p-slice", "2x2x2", 4, 2),
        ("tpu-v5p-slice", "16x16x24", 4, 1536),
        ("tpu-v4-podslice", "2x4x4", 4, 8),
        ("tpu-v5-lite-device", "2x2", 4, 1),  # not in the table: single host only
    ],
)
def test_hosts(accelerator: str, topology: str, chips: int, hosts: int) -> None:
    accel = parse_accelerator(
        {"type": "tpu", "tpu": {"accelerator": accelerator, "topology": topology, "chips": chips}}
    )
    assert accel.hosts() == hosts


def test_gpu_nodes_and_cpu_hosts() -> None:
    assert parse_accelerator(gpu_nodes(3)).hosts() == 3
    assert parse_accelerator(cpu_nodes(2)).hosts() == 2
    assert parse_accelerator({"type": "cpu"}).hosts() == 1
    assert parse_accelerator({"type": "gpu", "gpu": {"type": "nvidia-l4"}}).hosts() == 1
    assert Accelerator().hosts() == 1


@pytest.mark.parametrize(
    ("accelerator", "topology", "chips", "message"),
    [
        ("tpu-v5-lite-podslice", "3x3", 4, "spec.accelerator.tpu.topology 3x3 is not a slice GKE"),
        ("tpu-v5-lite-podslice", "4x4", 8, "spec.accelerator.tpu.chips must be 4 for"),
        ("tpu-v5p-slice", "4x4", 4, "not a slice GKE offers for tpu-v5p-slice: 2x2x1 (single"),
        ("tpu-v9-future", "4x4", 4, "tpu-v9-future is not in mutask's GKE slice table"),
    ],
)
def test_shapes_gke_does_not_offer_are_named(
    accelerator: str, topology: str, chips: int, message: str
) -> None:
    with pytest.raises(TopologyError, match=re.escape(message)):
        tpu_hosts(accelerator, topology, chips, "spec.accelerator")


@pytest.mark.parametrize(
    ("accelerator", "topology", "chips"),
    [(a, t, c) for a, table in TPU_SLICES.items() for t, c in table.items()]
    + [(a, t, 8 if c == 4 else 4) for a, table in TPU_SLICES.items() for t, c in table.items()]
    + [("tpu-v5-lite-podslice", t, 4) for t in ("2x2x2", "1x4", "32x32", "4x16")]
    + [("tpu-v5p-slice", t, 4) for t in ("4x4", "2x2x3", "16x16x32")],
)
def test_the_cel_rules_agree_with_the_operator(accelerator: str, topology: str, chips: int) -> None:
    """CEL accepts exactly what tpu_hosts accepts (and names the same field)."""
    errors = cel_errors(TI, ti(accelerator=tpu(topology, chips, accelerator)))
    try:
        tpu_hosts(accelerator, topology, chips, "spec.accelerator")
    except TopologyError as err:
        field = str(err).split(" ", 1)[0]
        assert errors and any(field in e for e in errors), (str(err), errors)
    else:
        assert errors == []
