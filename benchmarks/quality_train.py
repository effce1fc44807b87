"""The quality protocol's training loop for baselines and the root: train to convergence.

SGD with momentum, global-norm clipping, linear warmup then cosine decay over the epoch cap,
one validation pass per epoch, the best-validation checkpoint kept, and an early stop after
``patience`` epochs without improvement (so the cap is an upper bound, not the usual length).
Only the given trainable modules are optimised; everything else in the model is frozen.
No augmentation unless asked. Every random choice (batch order) comes from the given seed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

Tensors = tuple[torch.Tensor, torch.Tensor]
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class Schedule:
    """One training run's recipe (the learning rate is the grid's variable)."""

    lr: float
    max_epochs: int
    patience: int
    batch_size: int = 64
    momentum: float = 0.9
    warmup: float = 0.05
    clip: float = 1.0


@dataclass
class Fit:
    """The outcome of one run: the best validation accuracy and what it cost."""

    best_val: float
    best_epoch: int
    epochs: int
    examples: int
    seconds: float
    curve: list[tuple[int, float]] = field(default_factory=list)  # (examples seen, val acc)

    @property
    def stopped_early(self) -> bool:
        return self.best_epoch < self.epochs


def lr_at(step: int, total: int, base: float, warmup: float) -> float:
    """Linear warmup then cosine decay to zero over ``total`` steps."""
    n = max(1, round(total * warmup))
    if step < n:
        return base * (step + 1) / n
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - n) / max(1, total - n))))


@torch.inference_mode()
def accuracy(model: nn.Module, data: Tensors, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` on ``data``."""
    was = model.training
    model.eval()
    x, y = data
    correct = 0
    for i in range(0, x.shape[0], batch_size):
        correct += int((model(x[i : i + batch_size]).argmax(-1) == y[i : i + batch_size]).sum())
    model.train(was)
    return correct / max(1, x.shape[0])


def fit(
    model: nn.Module,
    trainable: Sequence[nn.Module],
    train: Tensors,
    validation: Tensors,
    schedule: Schedule,
    seed: int,
    *,
    augment: Augment | None = None,
    stop_epoch: int | None = None,
    log: Callable[[str], None] | None = None,
) -> Fit:
    """Train ``trainable`` (parts of ``model``) and leave the best-validation weights in it.

    ``augment`` (a batch transform drawing from the given generator) is off by default.
    ``stop_epoch`` ends the run after that many epochs of the same schedule (a pilot)."""
    model.requires_grad_(False)
    for m in trainable:
        m.requires_grad_(True)
    params = [p for m in trainable for p in m.parameters()]
    opt = torch.optim.SGD(params, lr=schedule.lr, momentum=schedule.momentum)
    x, y = train
    n = x.shape[0]
    per_epoch = math.ceil(n / schedule.batch_size)
    total = per_epoch * schedule.max_epochs
    gen = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    best = accuracy(model, validation)
    result = Fit(best, 0, 0, 0, 0.0, [(0, best)])
    best_state = [{k: v.clone() for k, v in m.state_dict().items()} for m in trainable]
    step = 0
    model.train()
    for epoch in range(1, schedule.max_epochs + 1):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, schedule.batch_size):
            idx = order[i : i + schedule.batch_size]
            for group in opt.param_groups:
                group["lr"] = lr_at(step, total, schedule.lr, schedule.warmup)
            batch = x[idx] if augment is None else augment(x[idx], gen)
            loss = F.cross_entropy(model(batch), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            if schedule.clip:
                nn.utils.clip_grad_norm_(params, schedule.clip)
            opt.step()
            step += 1
            result.examples += int(idx.shape[0])
        diverged = not math.isfinite(float(loss.detach()))
        val = 0.0 if diverged else accuracy(model, validation)
        result.curve.append((result.examples, val))
        result.epochs = epoch
        if val > result.best_val:
            result.best_val, result.best_epoch = val, epoch
            best_state = [{k: v.clone() for k, v in m.state_dict().items()} for m in trainable]
        if log is not None:
            log(f"    epoch {epoch}: val {val:.4f} (best {result.best_val:.4f})")
        if epoch - result.best_epoch >= schedule.patience or diverged or epoch == stop_epoch:
            break
    for m, state in zip(trainable, best_state, strict=True):
        m.load_state_dict(state)
    model.requires_grad_(False)
    result.seconds = time.perf_counter() - started
    return result


@torch.inference_mode()
def features(
    model: nn.Module, images: torch.Tensor, stop: int, batch_size: int = 512
) -> torch.Tensor:
    """The class-token output of ``model``'s first ``stop`` components (a frozen trunk)."""
    model.eval()
    out = [
        model.forward_until(images[i : i + batch_size], stop)[:, 0]  # type: ignore[operator]
        for i in range(0, images.shape[0], batch_size)
    ]
    return torch.cat(out)
