"""The pure µ2Net core: components, paths, mutation, selection, scoring, retention, the
generation loop (:mod:`.driver`) that calls back into training, and who keeps training
inside a generation (:mod:`.halving`).

No torch and no I/O here (an import-linter contract enforces it); every random choice comes
from an injected ``numpy.random.Generator``, so the same seed gives the same evolution and
the whole algorithm is unit-tested in milliseconds.
"""

from mutask.contract import ROOT_TASK
from mutask.trainer.evolution.architecture import ViTShape, architecture
from mutask.trainer.evolution.driver import (
    Offspring,
    Report,
    Train,
    run_generation,
    run_generations,
)
from mutask.trainer.evolution.halving import FinalPhase, Halving, final_phase, survivors
from mutask.trainer.evolution.hparams import HValue, Ladder, SearchSpace, large_space
from mutask.trainer.evolution.iteration import IterationConfig, IterationResult, TaskIteration
from mutask.trainer.evolution.mutation import ChildPlan, NewComponent, fresh_plan, make_child
from mutask.trainer.evolution.schedule import Visit, round_robin
from mutask.trainer.evolution.scoring import ScoreBreakdown, Scorer
from mutask.trainer.evolution.selection import select_parent
from mutask.trainer.evolution.system import Component, Path, System, is_private

__all__ = [
    "ROOT_TASK",
    "ChildPlan",
    "Component",
    "FinalPhase",
    "HValue",
    "Halving",
    "IterationConfig",
    "IterationResult",
    "Ladder",
    "NewComponent",
    "Offspring",
    "Path",
    "Report",
    "ScoreBreakdown",
    "Scorer",
    "SearchSpace",
    "System",
    "TaskIteration",
    "Train",
    "ViTShape",
    "Visit",
    "architecture",
    "final_phase",
    "fresh_plan",
    "is_private",
    "large_space",
    "make_child",
    "round_robin",
    "run_generation",
    "run_generations",
    "select_parent",
    "survivors",
]
