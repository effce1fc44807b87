"""How many CPU threads a trainer uses: intra-op threads per model size, and how many of a
generation's candidates train at once (one per core), within the process's CPU budget."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from mutask.contract import ENV_CPU_REQUEST


def cgroup_cpu_limit(cpu_max: str) -> float | None:
    """CPUs allowed by a cgroup v2 ``cpu.max`` line (``"200000 100000"`` -> 2.0; ``max``: None)."""
    fields = cpu_max.split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        quota, period = int(fields[0]), int(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def available_cpus(cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """CPUs this process can use: its affinity mask, capped by its cgroup CPU limit.

    In a Kubernetes pod ``os.cpu_count()`` is the node's core count; the container's CPU
    limit is the cgroup quota, rounded down (at least 1).
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    try:
        limit = cgroup_cpu_limit(cpu_max.read_text())
    except OSError:
        limit = None
    if limit is not None:
        cpus = min(cpus, int(limit))
    return max(1, cpus)


def requested_cpus(env: Mapping[str, str]) -> int | None:
    """The pod's CPU request in whole CPUs from ``MUTASK_TRAINER_CPUS``, if set and valid.

    A pod without a CPU limit sees every core of its node; its request is its fair share,
    so the trainer sizes its workers to it rather than to the node.
    """
    raw = env.get(ENV_CPU_REQUEST, "").strip()
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 1 else None


def auto_cpu_threads(hidden: int, cores: int | None = None) -> int:
    """Intra-op threads for CPU training: 1 for small widths, else every core.

    For the tiny presets a step is a few small matmuls: OpenMP threads add synchronisation
    and, on a busy machine, spin-wait far longer than they save (measured on 2 cores with
    other load: 132 ms per mu-tiny step with 2 threads, 29 ms with 1). The cores go to
    candidates instead (:func:`auto_candidate_workers`).
    """
    cores = cores or available_cpus()
    return 1 if hidden <= 256 else cores


def auto_candidate_workers(kind: str, threads: int, candidates: int, cores: int) -> int:
    """Threads training a generation's candidates at once: one per core on a CPU whose
    kernels run single-threaded (one candidate per core, as the paper has one per
    accelerator); 1 on accelerators and with multi-threaded kernels (the cores are taken)."""
    if kind != "cpu" or threads > 1:
        return 1
    return max(1, min(candidates, cores))


@dataclass(frozen=True)
class CpuPolicy:
    """A trainer's CPU thread choices.

    ``threads``: torch intra-op threads on a CPU (None: :func:`auto_cpu_threads`, 0: leave
    torch's setting). ``workers``: a generation's candidates trained at once in lockstep on
    a CPU (None: :func:`auto_candidate_workers`; results do not depend on it). ``cpus``: at
    most this many CPUs for the automatic choices (e.g. the pod's request; None: every
    available one).
    """

    threads: int | None = None
    workers: int | None = None
    cpus: int | None = None

    def __post_init__(self) -> None:
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")

    def usable_cpus(self) -> int:
        """CPUs for the automatic thread and worker counts: available, capped by ``cpus``."""
        available = available_cpus()
        return min(available, self.cpus) if self.cpus else available

    def configure(self, device_kind: str, hidden: int) -> None:
        """Set torch's CPU intra-op threads for a model of width ``hidden`` (on a CPU)."""
        if device_kind == "cpu" and self.threads != 0:
            torch.set_num_threads(self.threads or auto_cpu_threads(hidden, self.usable_cpus()))

    def candidate_workers(self, device_kind: str, candidates: int) -> int:
        """How many of a generation's ``candidates`` train at once on ``device_kind``
        (threads on a CPU; accelerators train one candidate each, see training/placement)."""
        if device_kind != "cpu":
            return 1
        if self.workers is not None:
            return min(self.workers, max(1, candidates))
        return auto_candidate_workers(
            device_kind, torch.get_num_threads(), candidates, self.usable_cpus()
        )
