"""Successive halving inside a generation, and the final training phase it pays for.

Plain µ2Net trains every candidate of a generation for all V rounds (an even split: K * V
candidate rounds). With halving, every candidate trains the first round; after each round
only the better half goes on (ranked by the best score each candidate reached so far, ties
to the lower candidate number), and the last rounds train the leader alone. The winner
still gets all V rounds, but the generation spends only the sum of the rung sizes (K = 8,
V = 4: 8 + 4 + 2 + 1 = 15 candidate rounds instead of 32).

The rounds halving saves are not lost: :func:`final_phase` turns them into a final training
phase of the retained path (its own components only), so the task's budget stays exactly
G * K * V rounds of N steps, the same as the even split it replaces.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Halving:
    """Who trains in each of ``rounds`` rounds of a generation of ``candidates``.

    ``enabled=False`` is the even split (every candidate every round), kept for comparison.
    """

    candidates: int
    rounds: int
    enabled: bool = True

    def __post_init__(self) -> None:
        if self.candidates < 1 or self.rounds < 1:
            raise ValueError(
                f"halving needs candidates >= 1 and rounds >= 1, got {self.candidates} "
                f"and {self.rounds}"
            )

    def active(self, round_: int) -> int:
        """How many candidates train in round ``round_`` (0-based): K, ⌈K/2⌉, ⌈K/4⌉, …, 1."""
        if not 0 <= round_ < self.rounds:
            raise ValueError(f"round {round_} is outside 0..{self.rounds - 1}")
        if not self.enabled:
            return self.candidates
        return max(1, -(-self.candidates // (1 << round_)))

    @property
    def rung_sizes(self) -> tuple[int, ...]:
        return tuple(self.active(r) for r in range(self.rounds))

    @property
    def candidate_rounds(self) -> int:
        """Candidate rounds one generation trains."""
        return sum(self.rung_sizes)

    @property
    def saved(self) -> int:
        """Candidate rounds one generation saves against the even split."""
        return self.candidates * self.rounds - self.candidate_rounds


def survivors(best: Sequence[float | None], active: Sequence[int], keep: int) -> list[int]:
    """The ``keep`` best of the ``active`` candidates, in candidate order.

    ``best[k]`` is the best score candidate ``k`` has reached so far (None: no round yet,
    ranked last); ties go to the lower candidate number, so the choice is deterministic.
    """
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    ranked = sorted(active, key=lambda k: (best[k] is None, -(best[k] or 0.0), k))
    return sorted(ranked[:keep])


@dataclass(frozen=True)
class FinalPhase:
    """The retained path's final training: ``rounds`` validation rounds of ``steps`` steps."""

    rounds: int
    steps_per_round: int

    @property
    def steps(self) -> int:
        return self.rounds * self.steps_per_round


def final_phase(saved_rounds: int, steps_per_round: int, max_rounds: int) -> FinalPhase | None:
    """The final phase that ``saved_rounds`` candidate rounds of ``steps_per_round`` steps
    pay for, validated at most ``max_rounds`` times; None when nothing was saved.

    The steps are spread evenly over the rounds and rounded down, so the phase never
    spends more than what was saved.
    """
    if saved_rounds < 0 or steps_per_round < 1 or max_rounds < 1:
        raise ValueError(
            f"final_phase needs saved_rounds >= 0, steps_per_round >= 1 and max_rounds >= 1, "
            f"got {saved_rounds}, {steps_per_round}, {max_rounds}"
        )
    total = saved_rounds * steps_per_round
    rounds = min(max_rounds, saved_rounds)
    if rounds == 0 or total // rounds == 0:
        return None
    return FinalPhase(rounds, total // rounds)
