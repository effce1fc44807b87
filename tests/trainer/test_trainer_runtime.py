"""runtime/metrics.py (Prometheus over real HTTP) and runtime/signals.py (a real SIGTERM)."""

from __future__ import annotations

import os
import signal
import socket
import time
import urllib.request
from collections.abc import Iterator

import pytest

from mutask.trainer.runtime.metrics import TrainerMetrics
from mutask.trainer.runtime.signals import StopFlag

EVENTS = [
    {"event": "generation", "generation": 0, "generations": 3},
    {
        "event": "candidate",
        "generation": 1,
        "best_score": 0.8,
        "best_accuracy": 0.85,
        "params_added": 1234,
        "examples_per_second": 950.5,
        "step_seconds": 0.02,
    },
    {"event": "candidate", "generation": 1, "best_score": 0.9},
    {"event": "published", "checkpoint_seconds": 0.3, "no_forgetting_verified": True},
]


def _fed(task: str = "digits") -> TrainerMetrics:
    metrics = TrainerMetrics(task)
    for event in EVENTS:
        metrics(event)
    return metrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_metrics_are_served_over_http_with_the_task_label() -> None:
    metrics = _fed("private:x")
    port = _free_port()
    metrics.serve(port, addr="127.0.0.1")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    label = '{task="private:x"}'
    assert samples[f"mutask_trainer_generation{label}"] == 1
    assert samples[f"mutask_trainer_generations{label}"] == 3
    assert samples[f"mutask_trainer_candidates_trained_total{label}"] == 2
    assert samples[f"mutask_trainer_best_score{label}"] == 0.9
    assert samples[f"mutask_trainer_best_accuracy{label}"] == 0.85
    assert samples[f"mutask_trainer_params_added{label}"] == 1234
    assert samples[f"mutask_trainer_examples_per_second{label}"] == 950.5
    assert samples[f"mutask_trainer_step_seconds_count{label}"] == 1
    assert samples[f"mutask_trainer_checkpoint_seconds_count{label}"] == 1
    assert samples[f"mutask_trainer_no_forgetting_verified{label}"] == 1


def test_each_instance_has_its_own_registry() -> None:
    a, b = _fed("a"), TrainerMetrics("b")  # a second instance must not clash or share
    assert a.registry is not b.registry
    assert (
        a.registry.get_sample_value("mutask_trainer_candidates_trained_total", {"task": "a"}) == 2
    )
    assert (
        b.registry.get_sample_value("mutask_trainer_candidates_trained_total", {"task": "a"})
        is None
    )


def test_forgetting_detected_sets_the_gauge_to_zero() -> None:
    metrics = _fed()
    metrics({"no_forgetting_verified": False})
    assert (
        metrics.registry.get_sample_value(
            "mutask_trainer_no_forgetting_verified", {"task": "digits"}
        )
        == 0
    )


def test_events_without_numbers_leave_the_gauges_alone() -> None:
    metrics = _fed()
    metrics({"event": "log", "generation": "n/a", "best_score": None})
    get = metrics.registry.get_sample_value
    assert get("mutask_trainer_generation", {"task": "digits"}) == 1
    assert get("mutask_trainer_best_score", {"task": "digits"}) == 0.9


@pytest.fixture
def restore_sigterm() -> Iterator[None]:
    previous = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.usefixtures("restore_sigterm")
def test_stop_flag_is_set_by_a_real_sigterm() -> None:
    flag = StopFlag()
    flag.install()
    assert not flag()
    os.kill(os.getpid(), signal.SIGTERM)
    while not flag():  # handlers run between bytecodes; bounded by pytest-timeout
        time.sleep(0.01)
    assert flag() and flag.signal == signal.SIGTERM


def test_stop_flag_can_be_set_by_hand() -> None:
    flag = StopFlag()
    flag.set()
    assert flag() and flag.signal is None
