"""The learning-rate schedule of every candidate: linear warmup, then cosine decay to zero."""

from __future__ import annotations

import math


def lr_at(step: int, total: int, base: float, warmup_ratio: float) -> float:
    """The learning rate of step ``step`` (0-based) of ``total``: linear warmup over
    ``warmup_ratio`` of the steps (at least one) up to ``base``, then cosine decay to zero."""
    warmup = max(1, round(total * warmup_ratio))
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
