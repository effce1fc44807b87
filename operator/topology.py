"""How many hosts an accelerator spans: GKE's TPU slice shapes, multi-node GPUs. Pure.

A TPU slice is one GKE node pool: ``cloud.google.com/gke-tpu-accelerator`` and
``cloud.google.com/gke-tpu-topology`` on every node, ``google.com/tpu`` chips on each. A pod
asks for the chips of one host, so a slice of ``product(topology)`` chips spans
``product(topology) / chips`` hosts: ``2x4`` on ``tpu-v5-lite-podslice`` is one host of 8
chips, ``4x4`` four hosts of 4. :data:`TPU_SLICES` lists, per accelerator GKE documents, the
topologies it offers and the chips per host of each (what ``spec.accelerator.tpu.chips`` must
be); the CRDs' CEL rules carry the same table (``tests/operator/test_op_topology.py`` keeps
them equal). Other accelerator names (older or newer than this table) may use any single-host
shape of at most 8 chips, as before multi-host support.

A GPU introduction spans ``spec.accelerator.gpu.nodes`` nodes of ``gpu.count`` GPUs each.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Final

MULTI_HOST_CHIPS: Final = 4  # chips per host of every multi-host slice in the table

_V5E_V6E: Final = {
    "1x1": 1,  # single host (ct5lp-hightpu-1t / ct6e-standard-1t)
    "2x2": 4,  # single host (-4t)
    "2x4": 8,  # single host (-8t)
    "4x4": 4,  # 4 hosts of 4 chips
    "4x8": 4,  # 8 hosts
    "8x8": 4,  # 16 hosts
    "8x16": 4,  # 32 hosts
    "16x16": 4,  # 64 hosts
}
TPU_SLICES: Final[Mapping[str, Mapping[str, int]]] = {
    "tpu-v4-podslice": {
        "2x2x1": 4,
        **{t: 4 for t in ("2x2x2", "2x2x4", "2x4x4", "4x4x4", "4x4x8", "4x8x8", "8x8x8")},
        **{t: 4 for t in ("8x8x12", "8x8x16", "8x16x16", "12x16x16")},
    },
    "tpu-v5p-slice": {
        "2x2x1": 4,
        **{t: 4 for t in ("2x2x2", "2x2x4", "2x4x4", "4x4x4", "4x4x8", "4x8x8", "8x8x8")},
        **{t: 4 for t in ("8x8x16", "8x16x16", "16x16x16", "16x16x24")},
    },
    "tpu-v5-lite-podslice": _V5E_V6E,
    "tpu-v6e-slice": _V5E_V6E,
}
SINGLE_HOST_MAX_CHIPS: Final = 8  # the largest TPU host GKE offers (ct5lp-hightpu-8t)


class TopologyError(ValueError):
    """An accelerator shape GKE does not offer (the message names the field and the value)."""


def chips_of(topology: str) -> int:
    """The chips of a topology: the product of its dimensions (``4x4`` -> 16)."""
    return math.prod(int(d) for d in topology.split("x"))


def offered(accelerator: str) -> str:
    """The topologies GKE offers for ``accelerator``, for error messages."""
    table = TPU_SLICES[accelerator]
    single = [t for t, c in table.items() if c == chips_of(t)]
    multi = [t for t in table if t not in single]
    per_host = f"{MULTI_HOST_CHIPS} chips per host"
    return f"{', '.join(single)} (single host) or {', '.join(multi)} ({per_host})"


def tpu_hosts(accelerator: str, topology: str, chips: int, field: str) -> int:
    """Hosts of a TPU slice; raises :class:`TopologyError` for a shape GKE does not offer.

    ``field``: the accelerator block's path (``spec.accelerator``) for the message."""
    total = chips_of(topology)
    table = TPU_SLICES.get(accelerator)
    if table is None:
        if total > SINGLE_HOST_MAX_CHIPS or chips != total:
            raise TopologyError(
                f"{field}.tpu.topology {topology} with chips {chips}: {accelerator} is not in "
                f"mutask's GKE slice table ({', '.join(TPU_SLICES)}), so only a single-host "
                f"slice of at most {SINGLE_HOST_MAX_CHIPS} chips whose chips equal the "
                f"topology's is allowed"
            )
        return 1
    if topology not in table:
        raise TopologyError(
            f"{field}.tpu.topology {topology} is not a slice GKE offers for {accelerator}: "
            f"{offered(accelerator)}"
        )
    per_host = table[topology]
    if chips != per_host:
        raise TopologyError(
            f"{field}.tpu.chips must be {per_host} for {accelerator} {topology} "
            f"(the google.com/tpu chips of each of its {total // per_host} host(s)), not {chips}"
        )
    return total // per_host
