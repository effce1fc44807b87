"""halving.py: who trains on in each round of a generation, and what the final phase gets."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mutask.trainer.evolution import FinalPhase, Halving, final_phase, survivors


def test_the_better_half_goes_on_each_round_and_the_winner_trains_every_round() -> None:
    h = Halving(candidates=8, rounds=4)
    assert h.rung_sizes == (8, 4, 2, 1)
    assert h.candidate_rounds == 15
    assert h.saved == 32 - 15  # against the even split


def test_odd_counts_round_up_and_the_last_rounds_train_one() -> None:
    assert Halving(5, 5).rung_sizes == (5, 3, 2, 1, 1)
    assert Halving(1, 3).rung_sizes == (1, 1, 1)
    assert Halving(1, 3).saved == 0


def test_the_even_split_trains_every_candidate_every_round() -> None:
    h = Halving(8, 4, enabled=False)
    assert h.rung_sizes == (8, 8, 8, 8)
    assert h.saved == 0


def test_bad_sizes_and_rounds_are_refused() -> None:
    with pytest.raises(ValueError, match="candidates >= 1"):
        Halving(0, 2)
    with pytest.raises(ValueError, match="outside"):
        Halving(4, 2).active(2)


def test_survivors_are_the_best_scores_in_candidate_order() -> None:
    best = [0.5, 0.9, 0.1, 0.7]
    assert survivors(best, [0, 1, 2, 3], 2) == [1, 3]
    assert survivors(best, [0, 2, 3], 2) == [0, 3]  # only active candidates compete


def test_ties_go_to_the_lower_candidate_and_unscored_ones_come_last() -> None:
    assert survivors([0.5, 0.5, 0.5], [0, 1, 2], 2) == [0, 1]
    assert survivors([None, 0.0, None], [0, 1, 2], 2) == [0, 1]
    assert survivors([None, None], [0, 1], 1) == [0]


def test_keep_must_be_positive() -> None:
    with pytest.raises(ValueError, match="keep"):
        survivors([0.1], [0], 0)


@given(
    scores=st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=12),
    rounds=st.integers(1, 6),
)
def test_halving_keeps_the_leader_and_never_grows(scores: list[float], rounds: int) -> None:
    """Driven like the engine drives it: whoever leads after a round is never dropped."""
    h = Halving(len(scores), rounds)
    active = list(range(len(scores)))
    best: list[float | None] = [None] * len(scores)
    for r in range(rounds):
        assert len(active) == h.active(r)
        for k in active:
            best[k] = scores[k]
        if r + 1 < rounds:
            leader = max(active, key=lambda k: (best[k], -k))
            nxt = survivors(best, active, h.active(r + 1))
            assert leader in nxt and set(nxt) <= set(active)
            active = nxt


def test_the_final_phase_gets_exactly_the_saved_steps_or_fewer() -> None:
    phase = final_phase(saved_rounds=34, steps_per_round=10, max_rounds=8)
    assert phase == FinalPhase(rounds=8, steps_per_round=42)
    assert phase.steps == 336 <= 340
    assert final_phase(3, 10, 8) == FinalPhase(3, 10)
    assert final_phase(0, 10, 8) is None


@given(st.integers(0, 500), st.integers(1, 100), st.integers(1, 20))
def test_the_final_phase_never_overspends(saved: int, steps: int, max_rounds: int) -> None:
    phase = final_phase(saved, steps, max_rounds)
    if phase is None:
        assert saved == 0
    else:
        assert phase.rounds <= max_rounds and 0 < phase.steps <= saved * steps
        assert saved * steps - phase.steps < phase.rounds  # only the rounding is lost


def test_final_phase_refuses_bad_arguments() -> None:
    with pytest.raises(ValueError, match="final_phase"):
        final_phase(-1, 10, 4)
