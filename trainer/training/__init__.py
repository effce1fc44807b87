"""Training candidates: one candidate trainer, used alone, in lockstep, or one per device.

:mod:`.candidate` owns a candidate's state, its step, the end of a validation round, the
final restore and ``evaluate``; :mod:`.lockstep` trains a generation on shared batches
(round by round, with per-core workers); :mod:`.prefix` shares frozen prefixes;
:mod:`.placement` puts one candidate per device; :mod:`.schedule` is the learning rate;
:mod:`.backend` holds what differs per device (eager, or XLA in :mod:`.xla`).
"""

from mutask.trainer.training.candidate import (
    Batch,
    Candidate,
    CandidateResult,
    CandidateTrainer,
    Interrupted,
    Momentum,
    RoundResult,
    TrainSettings,
    evaluate,
    logits_of,
)
from mutask.trainer.training.lockstep import (
    Lockstep,
    OneByOne,
    train_candidate,
    train_generation,
)
from mutask.trainer.training.placement import Placed, train_placed

__all__ = [
    "Batch",
    "Candidate",
    "CandidateResult",
    "CandidateTrainer",
    "Interrupted",
    "Lockstep",
    "Momentum",
    "OneByOne",
    "Placed",
    "RoundResult",
    "TrainSettings",
    "evaluate",
    "logits_of",
    "train_candidate",
    "train_generation",
    "train_placed",
]
