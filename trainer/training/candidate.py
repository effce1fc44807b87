"""One candidate's training: its state, the step, the end of a validation round, the final
snapshot restore; and ``evaluate``, the one validation every caller uses.

A :class:`Candidate` is a model, the modules it owns (trainable, with their inherited SGD
momentum) and everything it only reads (frozen, ``requires_grad=False``). A
:class:`CandidateTrainer` holds its optimizer, schedule, step count and best snapshot; its
``step`` is the whole training step, top to bottom: learning rate, forward, loss, zero_grad,
backward, clip, optimizer step, step boundary. After each validation round ``end_round``
scores the quality and snapshots the candidate if it reached its bar (best-checkpoint
selection); ``finish`` restores the best snapshot. The loops that feed the step (one
candidate or a generation in lockstep) are in :mod:`mutask.trainer.training.lockstep`.

Nothing here reads a value back to the host inside a round: validation counts correct
predictions into a device tensor, and :func:`accuracy` turns it into a float once, at the
round's end. What differs per device (the optimizer and how its learning rate is set, the
step boundary, how validation data is cut into batches) is asked of the device's
:class:`~mutask.trainer.training.backend.Backend`: eager on CPU and CUDA, XLA's in
:mod:`mutask.trainer.training.xla`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from mutask.trainer.evolution import HValue
from mutask.trainer.models import PathModel
from mutask.trainer.training.backend import Backend, backend_for, device_of
from mutask.trainer.training.optim import momentum_of
from mutask.trainer.training.schedule import lr_at

Batch = tuple[torch.Tensor, torch.Tensor]
Momentum = list[dict[str, torch.Tensor]]
Prefix = tuple[str, ...]


class Interrupted(RuntimeError):
    """Training was asked to stop (SIGTERM); the caller saves what is finished and exits."""


@dataclass(frozen=True)
class TrainSettings:
    """The per-candidate budget and execution options."""

    rounds: int
    steps_per_round: int
    eval_batch_size: int = 256
    autocast: torch.dtype | None = None
    clip_norm: float = 1.0


@dataclass
class RoundResult:
    round: int
    quality: float
    score: float
    snapshot: bool


@dataclass
class CandidateResult:
    """Best validation quality reached at or above the bar (None if never) and timings."""

    quality: float | None
    score: float | None
    rounds: list[RoundResult] = field(default_factory=list)
    steps: int = 0
    examples: int = 0
    train_seconds: float = 0.0

    @property
    def examples_per_second(self) -> float:
        return self.examples / self.train_seconds if self.train_seconds > 0 else 0.0


@dataclass(frozen=True)
class Candidate:
    """One candidate as training sees it.

    ``model`` maps images to logits; ``trainable`` are the modules it owns (the optimizer's
    parameters), seeded with ``momentum`` (one dict per module, may be empty); ``score_fn``
    turns a validation quality into its score, which must reach ``bar`` for a snapshot.
    ``prefix`` names the model's leading components that are frozen (``model`` is then a
    :class:`~mutask.trainer.models.PathModel`): candidates with a common prefix share its
    activations (see :mod:`mutask.trainer.training.prefix`).
    """

    model: nn.Module
    trainable: Sequence[nn.Module]
    momentum: Sequence[Mapping[str, torch.Tensor]]
    hparams: Mapping[str, HValue]
    score_fn: Callable[[float], float] = lambda quality: quality
    bar: float = float("-inf")
    prefix: Prefix = ()

    @property
    def device(self) -> torch.device:
        """Where the candidate trains: the device of its own modules (else of its model)."""
        for module in self.trainable:
            for p in module.parameters():
                return p.device
        return device_of(self.model)

    @property
    def split(self) -> int:
        """Where the candidate's own part starts (the length of its frozen prefix)."""
        return len(self.prefix)

    def prefix_modules(self) -> Sequence[nn.Module]:
        """The modules of the frozen prefix, in order."""
        return list(cast(PathModel, self.model).components)[: self.split] if self.split else []

    def forward(self, inputs: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Logits from ``inputs``, the activation at component ``start`` (0: the images)."""
        if start:
            return cast(PathModel, self.model).forward_from(inputs, start)
        logits: torch.Tensor = self.model(inputs)
        return logits


def mixed_precision(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[None]:
    """Mixed precision on ``device`` at ``dtype``, or nothing for None (float32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


class CandidateTrainer:
    """One candidate's optimizer, schedule, step count and best snapshot."""

    def __init__(self, candidate: Candidate, settings: TrainSettings) -> None:
        self.candidate = candidate
        self.settings = settings
        self.backend: Backend = backend_for(candidate.device)
        self.optimizer = self.backend.optimizer(
            candidate.trainable, candidate.momentum, candidate.hparams
        )
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.total_steps = settings.rounds * settings.steps_per_round
        self.base_lr = float(candidate.hparams["opt_lr"])
        self.warmup_ratio = float(candidate.hparams["opt_lr_warmup_ratio"])
        self.set_lr = self.backend.learning_rate(self.optimizer, self.lr_of, self.total_steps)
        self.steps = 0
        self.result = CandidateResult(None, None)
        self.best_state: list[dict[str, torch.Tensor]] | None = None
        self.best_momentum: Momentum = [dict(m) for m in candidate.momentum]
        self.backend.boundary()  # the candidate's copies and optimizer state: their own graph

    def lr_of(self, step: int) -> float:
        """The scheduled learning rate of step ``step`` (see :func:`.schedule.lr_at`)."""
        return lr_at(step, self.total_steps, self.base_lr, self.warmup_ratio)

    def step(self, inputs: torch.Tensor, labels: torch.Tensor, start: int = 0) -> None:
        """One optimizer step on a batch; ``inputs`` is its activation at component
        ``start`` (the images themselves for 0, a shared frozen prefix's output otherwise)."""
        self.set_lr(self.steps)
        with mixed_precision(labels.device, self.settings.autocast):
            logits = self.candidate.forward(inputs, start)
            loss = F.cross_entropy(logits, labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        if self.settings.clip_norm:
            clip_grad_norm(self.params, self.settings.clip_norm, self.backend.foreach)
        self.optimizer.step()
        self.backend.boundary()  # the step boundary (XLA runs the step's graph here)
        self.steps += 1
        self.result.examples += labels.shape[0]

    def end_round(self, quality: float) -> RoundResult:
        """Score a validation round; snapshot the candidate if it is the best at or above
        its bar so far."""
        score = self.candidate.score_fn(quality)
        result = self.result
        snapshot = score >= self.candidate.bar and (result.score is None or score > result.score)
        if snapshot:
            result.quality, result.score = quality, score
            self.best_state = [
                {k: v.detach().clone() for k, v in m.state_dict().items()}
                for m in self.candidate.trainable
            ]
            self.best_momentum = [momentum_of(self.optimizer, m) for m in self.candidate.trainable]
        done = RoundResult(len(result.rounds), quality, score, snapshot)
        result.rounds.append(done)
        self.backend.boundary()
        return done

    def finish(self) -> tuple[CandidateResult, Momentum]:
        """Restore the best snapshot (if any); the result and the momentum to inherit."""
        self.result.steps = self.steps
        if self.best_state is not None:
            for module, state in zip(self.candidate.trainable, self.best_state, strict=True):
                module.load_state_dict(state)
        self.backend.boundary()
        return self.result, self.best_momentum


def clip_grad_norm(params: Sequence[torch.Tensor], max_norm: float, foreach: bool | None) -> None:
    """Scale the gradients of ``params`` to a global L2 norm of at most ``max_norm``: torch's
    ``clip_grad_norm_`` in its two halves (torch-xla replaces ``clip_grad_norm_`` itself
    with a version that refuses foreach kernels even for CPU tensors)."""
    grads = [p.grad for p in params if p.grad is not None]
    total = torch.nn.utils.get_total_norm(grads, 2.0, False, foreach)
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total, foreach)


# -- validation -----------------------------------------------------------------------------


def validation_chunks(
    images: torch.Tensor, labels: torch.Tensor, size: int, device: torch.device
) -> list[Batch]:
    """The validation examples in batches of ``size`` on ``device``, cut the device's way
    (eager: views, the last one may be shorter; XLA: one fixed shape, padded, moved once)."""
    return backend_for(device).chunks(images, labels, size)


def count_correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Correct top-1 predictions, as a device scalar (no host sync)."""
    return (logits.argmax(-1) == labels).sum()


def accuracy(correct: torch.Tensor, examples: int) -> float:
    """A validation's correct count as a fraction: its one host sync."""
    return float(correct.item()) / max(1, examples)


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 256,
    autocast: torch.dtype | None = None,
) -> float:
    """Top-1 accuracy of ``model`` over the given examples, at ``autocast`` precision, on
    the model's device."""
    backend = backend_for(device_of(model, images.device))
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=backend.device)
    backend.boundary()  # the count starts as device data: every chunk runs one graph
    with backend.inference(), mixed_precision(backend.device, autocast):
        for x, y in backend.chunks(images, labels, batch_size):
            correct += count_correct(model(x), y)
            backend.boundary()
    model.train(was_training)
    return accuracy(correct, images.shape[0])


def logits_of(
    model: nn.Module,
    images: torch.Tensor,
    batch_size: int = 256,
    autocast: torch.dtype | None = None,
) -> torch.Tensor:
    """The model's logits on ``images`` (eval mode, at ``autocast`` precision), on the
    model's device."""
    backend = backend_for(device_of(model, images.device))
    model.eval()
    labels = torch.zeros(images.shape[0], dtype=torch.int64, device=images.device)
    parts = []
    with backend.inference(), mixed_precision(backend.device, autocast):
        for x, _ in backend.chunks(images, labels, batch_size):
            parts.append(model(x))
            backend.boundary()
        return backend.gather(parts, images.shape[0])
