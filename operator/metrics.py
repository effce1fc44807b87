"""Operator Prometheus metrics (kopf has none): reconciles, errors, durations, Jobs, phases."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from mutask.operator import api

RECONCILE_TOTAL = Counter(
    "mutask_operator_reconcile_total", "Reconciliations by kind and result", ["kind", "result"]
)
RECONCILE_DURATION = Histogram(
    "mutask_operator_reconcile_duration_seconds",
    "Wall time of one reconciliation",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
RECONCILE_ERRORS = Counter(
    "mutask_operator_reconcile_errors_total", "Reconciliations that raised", ["kind"]
)
INTRODUCTIONS = Gauge(
    "mutask_operator_introductions", "TaskIntroductions by current condition", ["condition"]
)
JOBS_LAUNCHED = Counter("mutask_operator_jobs_launched_total", "Trainer Jobs created")
JOBS_FAILED = Counter("mutask_operator_jobs_failed_total", "Trainer Jobs that failed")
JOBS_PREEMPTED = Counter(
    "mutask_operator_jobs_preempted_total",
    "Trainer pods disrupted (spot preemption, eviction) or exited 75 after SIGTERM",
)
COUNTERS: Mapping[str, Counter] = {
    "jobs_launched": JOBS_LAUNCHED,
    "jobs_failed": JOBS_FAILED,
    "jobs_preempted": JOBS_PREEMPTED,
}

_started: set[int] = set()


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Start the /metrics HTTP server once per port (port 0 or less disables it)."""
    if port > 0 and port not in _started:
        start_http_server(port, addr=addr)
        _started.add(port)


@contextmanager
def timed(kind: str) -> Iterator[None]:
    """Count and time one reconciliation; errors are counted and re-raised."""
    start = time.perf_counter()
    try:
        yield
    except Exception:
        RECONCILE_ERRORS.labels(kind).inc()
        RECONCILE_TOTAL.labels(kind, "error").inc()
        raise
    else:
        RECONCILE_TOTAL.labels(kind, "ok").inc()
    finally:
        RECONCILE_DURATION.labels(kind).observe(time.perf_counter() - start)


def set_state_counts(counts: Mapping[str, int]) -> None:
    """Introductions per state (the ``condition`` label), zero for states nobody is in."""
    for state in (api.NEW, *api.STATES):
        INTRODUCTIONS.labels(state).set(counts.get(state, 0))
