"""Prometheus metrics of a trainer process, on its own registry (no global state)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class TrainerMetrics:
    """The trainer's metric families, labelled by task; ``serve`` exposes /metrics."""

    def __init__(self, task: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.task = task
        r = self.registry
        self.generation = Gauge(
            "mutask_trainer_generation", "Current generation (0-based).", ["task"], registry=r
        )
        self.generations = Gauge(
            "mutask_trainer_generations", "Generations in this iteration.", ["task"], registry=r
        )
        self.candidates = Counter(
            "mutask_trainer_candidates_trained", "Candidates trained.", ["task"], registry=r
        )
        self.best_score = Gauge(
            "mutask_trainer_best_score", "Best score so far.", ["task"], registry=r
        )
        self.best_accuracy = Gauge(
            "mutask_trainer_best_accuracy",
            "Validation accuracy of the best path.",
            ["task"],
            registry=r,
        )
        self.params_added = Gauge(
            "mutask_trainer_params_added",
            "Parameters the best path adds to the system.",
            ["task"],
            registry=r,
        )
        self.examples_per_second = Gauge(
            "mutask_trainer_examples_per_second",
            "Training throughput of the last candidate.",
            ["task"],
            registry=r,
        )
        self.step_seconds = Histogram(
            "mutask_trainer_step_seconds",
            "Mean step time per round.",
            ["task"],
            registry=r,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5),
        )
        self.checkpoint_seconds = Histogram(
            "mutask_trainer_checkpoint_seconds",
            "Time to save a checkpoint or publish.",
            ["task"],
            registry=r,
            buckets=(0.01, 0.1, 0.5, 1, 5, 30, 120),
        )
        self.no_forgetting = Gauge(
            "mutask_trainer_no_forgetting_verified",
            "1 when every other task was re-verified bit-identical.",
            ["task"],
            registry=r,
        )

    def serve(self, port: int, addr: str = "0.0.0.0") -> Callable[[], None]:
        """Serve /metrics in a daemon thread; returns a function that stops the server."""
        server, thread = start_http_server(port, addr=addr, registry=self.registry)

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        return stop

    def __call__(self, progress: Mapping[str, object]) -> None:
        """Progress sink: mirror the engine's progress events into the gauges."""
        t = self.task
        gauges = {
            "generation": self.generation,
            "generations": self.generations,
            "best_score": self.best_score,
            "best_accuracy": self.best_accuracy,
            "params_added": self.params_added,
            "examples_per_second": self.examples_per_second,
        }
        for key, gauge in gauges.items():
            value = progress.get(key)
            if isinstance(value, int | float):
                gauge.labels(t).set(float(value))
        if progress.get("event") == "candidate":
            self.candidates.labels(t).inc()
        step = progress.get("step_seconds")
        if isinstance(step, float):
            self.step_seconds.labels(t).observe(step)
        ckpt = progress.get("checkpoint_seconds")
        if isinstance(ckpt, float):
            self.checkpoint_seconds.labels(t).observe(ckpt)
        verified = progress.get("no_forgetting_verified")
        if isinstance(verified, bool):
            self.no_forgetting.labels(t).set(1.0 if verified else 0.0)
