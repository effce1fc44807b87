"""A task iteration's budget in examples: the steps per round the data calls for, and what
the search and the final phase will spend (so runs of any shape compare in examples).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mutask.trainer.config import EPOCH_CAP, MIN_STEPS_PER_ROUND, BudgetConfig
from mutask.trainer.evolution import FinalPhase, Halving, final_phase

FINAL_ROUNDS_PER_ROUND = 2  # the final phase validates at most 2 * V times


def epoch_examples(train_examples: int) -> int:
    """One epoch of a training set, as the budget counts it (capped at ``EPOCH_CAP``)."""
    return min(train_examples, EPOCH_CAP)


def derived_steps(budget: BudgetConfig, train_examples: int) -> int:
    """Steps per round: ``budget.steps_per_round``, or (0) ``budget.epochs`` epochs of the
    training set spread over the G * K * V rounds of the even split."""
    if budget.steps_per_round:
        return budget.steps_per_round
    rounds = budget.generations * budget.candidates * budget.validation_rounds
    examples = budget.epochs * epoch_examples(train_examples)
    return max(MIN_STEPS_PER_ROUND, math.ceil(examples / (rounds * budget.batch_size)))


@dataclass(frozen=True)
class Plan:
    """What a task iteration with this budget trains: rounds of ``steps_per_round`` steps
    for the candidates of every generation, then ``final`` (None: no final phase)."""

    budget: BudgetConfig
    steps_per_round: int
    halving: Halving
    final: FinalPhase | None

    @property
    def search_examples(self) -> int:
        per_generation = self.halving.candidate_rounds * self.steps_per_round
        return self.budget.generations * per_generation * self.budget.batch_size

    @property
    def final_examples(self) -> int:
        return self.final.steps * self.budget.batch_size if self.final else 0

    @property
    def examples(self) -> int:
        return self.search_examples + self.final_examples

    def describe(self) -> str:
        b = self.budget
        final = (
            f", then a final phase of {self.final.rounds} x {self.final.steps_per_round} steps"
            if self.final
            else ""
        )
        return (
            f"{b.generations} generation(s) x {b.candidates} candidates, up to "
            f"{b.validation_rounds} rounds of {self.steps_per_round} steps of {b.batch_size}"
            f"{' (successive halving)' if b.halving else ''}{final}: "
            f"{self.examples:,} training examples"
        )


def plan(budget: BudgetConfig, train_examples: int) -> Plan:
    """The plan of ``budget`` for a training set of ``train_examples``."""
    steps = derived_steps(budget, train_examples)
    halving = Halving(budget.candidates, budget.validation_rounds, budget.halving)
    final = (
        final_phase(
            budget.generations * halving.saved,
            steps,
            FINAL_ROUNDS_PER_ROUND * budget.validation_rounds,
        )
        if budget.final_training
        else None
    )
    return Plan(budget, steps, halving, final)
