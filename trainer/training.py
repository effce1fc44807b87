"""Training one candidate: SGD with momentum, clipping, warmup+cosine, validation rounds.

Only the candidate's own components get gradients and optimizer state; everything it
references is frozen (``requires_grad=False``) and only read. After each validation round
the candidate is snapshotted if its score reached the bar (best-checkpoint selection); at
the end the best snapshot is restored. The step is kept lean (no host syncs inside a
round), so it runs as fast as a hand-written loop: see benchmarks/step_overhead.py.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

from mutask.trainer.evolution import HValue

Batch = tuple[torch.Tensor, torch.Tensor]


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
    def improved(self) -> bool:
        return self.quality is not None

    @property
    def examples_per_second(self) -> float:
        return self.examples / self.train_seconds if self.train_seconds > 0 else 0.0


def lr_at(step: int, total: int, base: float, warmup_ratio: float) -> float:
    """Linear warmup then cosine decay to zero."""
    warmup = max(1, round(total * warmup_ratio))
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(
    modules: Sequence[nn.Module],
    momentum_state: Sequence[Mapping[str, torch.Tensor]],
    hparams: Mapping[str, HValue],
) -> torch.optim.SGD:
    """SGD over the trainable modules, seeded with their inherited momentum buffers."""
    params = [p for m in modules for p in m.parameters()]
    opt = torch.optim.SGD(
        params,
        lr=float(hparams["opt_lr"]),
        momentum=float(hparams["opt_momentum"]),
        nesterov=bool(hparams["opt_nesterov"]),
        foreach=True,
    )
    for module, state in zip(modules, momentum_state, strict=True):
        for name, p in module.named_parameters():
            buf = state.get(name)
            if buf is not None and buf.shape == p.shape:
                opt.state[p]["momentum_buffer"] = buf.detach().clone().to(p.device)
    return opt


def momentum_of(opt: torch.optim.Optimizer, module: nn.Module) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name, p in module.named_parameters():
        buf = opt.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            out[name] = buf.detach().clone()
    return out


def _autocast(
    device: torch.device, dtype: torch.dtype | None
) -> contextlib.AbstractContextManager[None]:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    batch_size: int = 256,
    autocast: torch.dtype | None = None,
) -> float:
    """Top-1 accuracy over the given examples (one host sync at the end)."""
    was_training = model.training
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=images.device)
    with _autocast(images.device, autocast):
        for i in range(0, images.shape[0], batch_size):
            logits = model(images[i : i + batch_size])
            correct += (logits.argmax(-1) == labels[i : i + batch_size]).sum()
    model.train(was_training)
    return float(correct.item()) / max(1, images.shape[0])


@torch.inference_mode()
def logits_of(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
    model.eval()
    return torch.cat([model(images[i : i + batch_size]) for i in range(0, len(images), batch_size)])


def train_candidate(
    model: nn.Module,
    trainable: Sequence[nn.Module],
    momentum_state: Sequence[Mapping[str, torch.Tensor]],
    hparams: Mapping[str, HValue],
    batches: Iterator[Batch],
    validation: Batch,
    score_fn: Callable[[float], float],
    bar: float,
    settings: TrainSettings,
    *,
    on_step: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[CandidateResult, list[dict[str, torch.Tensor]]]:
    """Train, validate each round, keep the best snapshot ≥ bar; return it and its momentum."""
    opt = make_optimizer(trainable, momentum_state, hparams)
    params = [p for g in opt.param_groups for p in g["params"]]
    total = settings.rounds * settings.steps_per_round
    base_lr = float(hparams["opt_lr"])
    warmup = float(hparams["opt_lr_warmup_ratio"])
    result = CandidateResult(None, None)
    best_state: list[dict[str, torch.Tensor]] | None = None
    best_momentum: list[dict[str, torch.Tensor]] = [dict(s) for s in momentum_state]
    val_x, val_y = validation
    step = 0
    model.train()
    for rnd in range(settings.rounds):
        start = time.perf_counter()
        for _ in range(settings.steps_per_round):
            x, y = next(batches)
            lr = lr_at(step, total, base_lr, warmup)
            for group in opt.param_groups:
                group["lr"] = lr
            with _autocast(x.device, settings.autocast):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            if settings.clip_norm:
                torch.nn.utils.clip_grad_norm_(params, settings.clip_norm, foreach=True)
            opt.step()
            step += 1
            result.examples += x.shape[0]
            if on_step is not None:
                on_step(step)
            if should_stop is not None and should_stop():
                raise Interrupted("stop requested during training")
        result.train_seconds += time.perf_counter() - start
        quality = evaluate(model, val_x, val_y, settings.eval_batch_size, settings.autocast)
        score = score_fn(quality)
        snapshot = score >= bar and (result.score is None or score > result.score)
        if snapshot:
            result.quality, result.score = quality, score
            best_state = [
                {k: v.detach().clone() for k, v in m.state_dict().items()} for m in trainable
            ]
            best_momentum = [momentum_of(opt, m) for m in trainable]
        result.rounds.append(RoundResult(rnd, quality, score, snapshot))
    result.steps = step
    if best_state is not None:
        for module, state in zip(trainable, best_state, strict=True):
            module.load_state_dict(state)
    return result, best_momentum
