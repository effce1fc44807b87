"""Prometheus metrics of a serving process, on its own registry (no global state).

Same conventions as the trainer's (:mod:`mutask.trainer.runtime.metrics`): a ``mutask_serve_``
prefix, ``task`` labels, explicit buckets. Requests for a name that is not a served task are
counted under ``task="_unknown"``, so clients cannot create series at will.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:  # no torch at import: the chart tests check the metric names without it
    from mutask.trainer.serving.catalog import Catalog
    from mutask.trainer.serving.shared_prefix import Group

UNKNOWN_TASK = "_unknown"
CONTENT_TYPE = CONTENT_TYPE_LATEST
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class ServingMetrics:
    """The server's metric families."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "mutask_serve_requests",
            "Inference requests answered, by task and HTTP status code.",
            ["task", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "mutask_serve_request_duration_seconds",
            "Inference request latency, from the body read to the response built.",
            ["task"],
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.batch_size = Histogram(
            "mutask_serve_batch_size",
            "Rows of a task computed together in one batch window.",
            ["task"],
            registry=r,
            buckets=ROW_BUCKETS,
        )
        self.window_tasks = Histogram(
            "mutask_serve_window_tasks",
            "Tasks computed together in one batch window (sharing their common prefixes).",
            registry=r,
            buckets=(1, 2, 3, 4, 6, 8, 12, 16, 32),
        )
        self.compute = Histogram(
            "mutask_serve_window_seconds",
            "Compute time of one batch window.",
            registry=r,
            buckets=LATENCY_BUCKETS,
        )
        self.tasks = Gauge("mutask_serve_tasks", "Tasks served.", registry=r)
        self.version = Gauge(
            "mutask_serve_task_version",
            "Served version (the manifest's iteration) of each task.",
            ["task"],
            registry=r,
        )
        self.components = Gauge(
            "mutask_serve_components", "Distinct component modules in memory.", registry=r
        )
        self.parameters = Gauge(
            "mutask_serve_parameters",
            "Parameters in memory (each shared component counted once).",
            registry=r,
        )
        self.reloads = Counter(
            "mutask_serve_reloads",
            "Reloads of the served system, by outcome (loaded or failed).",
            ["outcome"],
            registry=r,
        )

    def task_label(self, task: str, catalog: Catalog) -> str:
        return task if task in catalog.tasks else UNKNOWN_TASK

    def request(self, task: str, code: int, seconds: float | None) -> None:
        self.requests.labels(task, str(code)).inc()
        if seconds is not None:
            self.latency.labels(task).observe(seconds)

    def window(self, groups: Sequence[Group], seconds: float) -> None:
        for g in groups:
            self.batch_size.labels(g.task.name).observe(g.images.shape[0])
        self.window_tasks.observe(len(groups))
        self.compute.observe(seconds)

    def loaded(self, catalog: Catalog, previous: Catalog | None) -> None:
        self.reloads.labels("loaded").inc()
        self.tasks.set(len(catalog.tasks))
        self.components.set(catalog.components)
        self.parameters.set(catalog.parameters)
        for name in set(previous.tasks if previous else ()) - set(catalog.tasks):
            self.version.remove(name)
        for name, task in catalog.tasks.items():
            try:
                self.version.labels(name).set(float(task.version))
            except ValueError:
                self.version.labels(name).set(0.0)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
