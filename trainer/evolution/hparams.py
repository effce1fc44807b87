"""Hyperparameter ladders and their µ-driven mutation (the spec's search-space table).

Every tunable key has an ordered ladder of values; a mutation moves it one rung up or down
(50/50, clipped at the ends). One self-tuned probability µ (``_mu_``) drives every decision:
it is mutated first and the new value is used for the rest. In the µ2Net+ variant every
action has its own probability, stored as ``_mu_/<action>`` and self-tuned the same way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

HValue = bool | int | float | str
MU = "_mu_"
PER_ACTION_PREFIX = "_mu_/"
DEPTH = "num_layers"
ADAPTER_DIM = "adapter_dim"
DATA_PREFIX = "ds_"

MU_LADDER: tuple[float, ...] = tuple(round(0.10 + 0.02 * i, 2) for i in range(11))
PER_ACTION_MU_LADDER: tuple[float, ...] = tuple(round(0.02 * i, 2) for i in range(1, 16))
PER_ACTION_MU_DEFAULT = 0.2


@dataclass(frozen=True)
class Ladder:
    """The ordered values a hyperparameter may take, and its default."""

    values: tuple[HValue, ...]
    default: HValue

    def __post_init__(self) -> None:
        if self.default not in self.values:
            raise ValueError(f"default {self.default!r} is not on the ladder {self.values}")

    def index(self, value: HValue) -> int:
        try:
            return self.values.index(value)
        except ValueError:
            raise ValueError(f"{value!r} is not on the ladder {self.values}") from None

    def step(self, value: HValue, rng: np.random.Generator) -> HValue:
        """One rung up or down (50/50), clipped at the ends."""
        i = self.index(value) + (1 if rng.random() < 0.5 else -1)
        return self.values[min(max(i, 0), len(self.values) - 1)]


@dataclass(frozen=True)
class SearchSpace:
    """All tunable keys with their ladders; ``fixed`` keys are recorded but never mutated."""

    ladders: Mapping[str, Ladder]
    fixed: Mapping[str, HValue] = field(default_factory=dict)
    per_action_mu: bool = False

    def defaults(self) -> dict[str, HValue]:
        hp: dict[str, HValue] = {k: v.default for k, v in self.ladders.items()}
        hp.update(self.fixed)
        return hp

    def model_keys(self) -> list[str]:
        """Tunable keys mutated per candidate (everything but µ and the data keys)."""
        return [k for k in self.ladders if k != MU and not k.startswith(DATA_PREFIX)]

    def data_keys(self) -> list[str]:
        """Tunable data keys, sampled once per generation."""
        return [k for k in self.ladders if k.startswith(DATA_PREFIX)]

    def check(self, hparams: Mapping[str, HValue]) -> None:
        """Raise ValueError naming the key if a value is off its ladder."""
        for key, ladder in self.ladders.items():
            if key in hparams and hparams[key] not in ladder.values:
                raise ValueError(f"hparam {key}={hparams[key]!r} is not on its ladder")


def large_space(
    *,
    max_layers: int,
    adapters: bool = True,
    per_action_mu: bool = False,
    tune_depth: bool = True,
    image_size: int = 384,
    defaults: Mapping[str, HValue] | None = None,
    fixed: Mapping[str, HValue] | None = None,
) -> SearchSpace:
    """The reference's large configuration (spec table), with depth tuning up to max_layers.

    ``tune_depth=False`` fixes the depth instead: ``num_layers`` is never mutated, so every
    child keeps its parent's depth (``max_layers`` when nothing set it). ``defaults``
    replaces ladder defaults (the same ladders: what a small model or small images start
    from); a value off its ladder raises ValueError. ``fixed`` takes keys out of the search:
    each is recorded at the value given (on its ladder) and never mutated."""
    ladders: dict[str, Ladder] = {
        MU: Ladder(MU_LADDER, 0.2),
        "opt_lr": Ladder(
            (1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5), 0.01
        ),
        "opt_lr_warmup_ratio": Ladder((0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4), 0.05),
        "opt_momentum": Ladder((0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.98, 0.99), 0.9),
        "opt_nesterov": Ladder((True, False), False),
        DEPTH: Ladder(tuple(range(1, max_layers + 1)), max_layers),
        "ds_crop": Ladder((True, False), True),
        "ds_flip_left_right": Ladder((True, False), True),
        "ds_area_range_min": Ladder((0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0), 0.05),
        "ds_aspect_ratio_range_min": Ladder((0.25, 0.5, 0.75, 1.0), 0.75),
    }
    for jitter in ("brightness", "contrast", "saturation", "hue"):
        ladders[f"ds_{jitter}_delta"] = Ladder((0.0, 0.01, 0.02, 0.05, 0.1, 0.2), 0.0)
    if adapters:
        ladders[ADAPTER_DIM] = Ladder((8, 16, 32, 64, 128), 16)
    for key, value in (defaults or {}).items():
        if key not in ladders:
            raise ValueError(f"no ladder for default {key}={value!r}")
        ladders[key] = Ladder(ladders[key].values, value)
    pinned: dict[str, HValue] = {"ds_image_size": image_size}
    for key, value in (fixed or {}).items():
        if key not in ladders or value not in ladders[key].values:
            raise ValueError(f"cannot fix {key}={value!r}: not a tunable value")
        pinned[key] = value
        del ladders[key]
    if not tune_depth:
        pinned[DEPTH] = ladders.pop(DEPTH).default
    return SearchSpace(ladders, fixed=pinned, per_action_mu=per_action_mu)


class MuSource:
    """Hands out mutation probabilities for actions, self-tuning them on first use.

    In the classic mode there is one µ, mutated once when the source is created. In the
    per-action mode (µ2Net+), each action's own µ is mutated the first time it is asked for.
    The (possibly mutated) values are written back into ``hparams``.
    """

    def __init__(
        self, hparams: dict[str, HValue], space: SearchSpace, rng: np.random.Generator
    ) -> None:
        self._hp = hparams
        self._space = space
        self._rng = rng
        self._ladder = Ladder(PER_ACTION_MU_LADDER, PER_ACTION_MU_DEFAULT)
        self._tuned: set[str] = set()
        mu_ladder = space.ladders[MU]
        current = hparams.get(MU, mu_ladder.default)
        if rng.random() < float(current):
            current = mu_ladder.step(current, rng)
        hparams[MU] = current

    def __call__(self, action: str) -> float:
        if not self._space.per_action_mu:
            return float(self._hp[MU])
        key = PER_ACTION_PREFIX + action
        if key in self._tuned:
            return float(self._hp[key])
        self._tuned.add(key)
        current = self._hp.get(key, PER_ACTION_MU_DEFAULT)
        if current not in self._ladder.values:
            current = PER_ACTION_MU_DEFAULT
        if self._rng.random() < float(current):
            current = self._ladder.step(current, self._rng)
        self._hp[key] = current
        return float(current)


def mutate_keys(
    hparams: dict[str, HValue],
    keys: Sequence[str],
    space: SearchSpace,
    mu: MuSource,
    rng: np.random.Generator,
) -> None:
    """Step each key one rung with probability µ (in place, in the given order)."""
    for key in keys:
        ladder = space.ladders[key]
        value = hparams.get(key, ladder.default)
        if rng.random() < mu(key):
            value = ladder.step(value, rng)
        hparams[key] = value
