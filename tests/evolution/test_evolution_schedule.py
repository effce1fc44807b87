"""Round-robin task visits."""

from __future__ import annotations

import pytest

from mutask.trainer.evolution import Visit, round_robin


def test_round_robin_visits_every_task_in_order_each_round() -> None:
    assert list(round_robin(["a", "b"], rounds=2)) == [
        Visit("a", 0),
        Visit("b", 0),
        Visit("a", 1),
        Visit("b", 1),
    ]


def test_round_robin_continues_the_visit_count_from_previous() -> None:
    visits = list(round_robin(["a", "b"], previous={"a": 3}))
    assert visits == [Visit("a", 3), Visit("b", 0)]


def test_round_robin_does_not_modify_previous() -> None:
    previous = {"a": 1}
    list(round_robin(["a"], rounds=3, previous=previous))
    assert previous == {"a": 1}


def test_round_robin_with_zero_rounds_visits_nothing() -> None:
    assert list(round_robin(["a"], rounds=0)) == []


def test_round_robin_rejects_duplicate_tasks() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        list(round_robin(["a", "b", "a"]))
