"""The µ2Net score: validation quality times a size penalty on shared-parameter accounting.

score(path) = quality * s ** (accounted_params(path) / P_root)  [* s ** (FLOPs / F_ref)]
accounted_params(path) = Σ_c |θ_c| / |owners(c) ∪ {path.task}|   (root owner not counted)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mutask.contract import ROOT_TASK
from mutask.trainer.evolution.architecture import ViTShape
from mutask.trainer.evolution.system import Component, Path, path_flops


@dataclass(frozen=True)
class ScoreBreakdown:
    """Every term of one score, for reports and status."""

    quality: float
    accounted_params: float
    penalty: float
    score: float


@dataclass(frozen=True)
class Scorer:
    """Scores paths of one system state; ``s`` = 1 disables the size penalty."""

    size_scale: float
    root_params: int
    owners: Mapping[str, frozenset[str]]
    components: Mapping[str, Component]
    shape: ViTShape
    flops_ref: int = 0

    def accounted_params(self, path: Path) -> float:
        total = 0.0
        for cid in path.component_ids:
            sharing = (set(self.owners.get(cid, frozenset())) - {ROOT_TASK}) | {path.task}
            total += self.components[cid].num_params / len(sharing)
        return total

    def breakdown(self, path: Path, quality: float) -> ScoreBreakdown:
        accounted = self.accounted_params(path)
        penalty = self.size_scale ** (accounted / self.root_params)
        if self.flops_ref:
            flops = path_flops(path, self.components, self.shape)
            penalty *= self.size_scale ** (flops / self.flops_ref)
        return ScoreBreakdown(quality, accounted, penalty, quality * penalty)

    def score(self, path: Path, quality: float) -> float:
        return self.breakdown(path, quality).score
