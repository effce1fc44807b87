"""Choosing the accelerator: torch-xla when PJRT_DEVICE is set and importable, CUDA, else CPU."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from mutask.contract import ENV_CPU_REQUEST


@dataclass(frozen=True)
class DeviceChoice:
    """The device to train on, its kind, how many there are, and the autocast dtype.

    ``devices`` are the devices a generation's candidates are placed on (candidate ``k`` on
    ``devices[k % n]``, see :mod:`mutask.trainer.training.placement`); the first is always
    ``device``, which holds the pool, the data and everything outside generation training. It
    defaults to ``(device,)``: one device, nothing split.
    """

    device: torch.device
    kind: str
    count: int
    autocast: torch.dtype | None
    devices: tuple[torch.device, ...] = ()

    def __post_init__(self) -> None:
        if not self.devices:
            object.__setattr__(self, "devices", (self.device,))
        elif self.devices[0] != self.device:
            raise ValueError(f"devices must start with device {self.device}, got {self.devices}")

    def describe(self) -> str:
        amp = f", autocast {self.autocast}" if self.autocast else ""
        split = f", candidates over {len(self.devices)}" if len(self.devices) > 1 else ""
        return f"{self.kind} ({self.device}, {self.count} device(s){split}{amp})"


def _xla_device(import_module: Callable[[str], object]) -> torch.device | None:
    try:
        xla = import_module("torch_xla")
    except ImportError:
        return None
    device_fn = getattr(xla, "device", None)
    if callable(device_fn):
        dev = device_fn()
        return dev if isinstance(dev, torch.device) else torch.device(str(dev))
    xm = import_module("torch_xla.core.xla_model")
    return torch.device(str(xm.xla_device()))  # type: ignore[attr-defined]


def select_device(
    preference: str = "auto",
    precision: str = "auto",
    *,
    env: Mapping[str, str] | None = None,
    import_module: Callable[[str], object] = importlib.import_module,
    cuda_available: Callable[[], bool] = torch.cuda.is_available,
) -> DeviceChoice:
    """Pick the device for ``preference`` (auto|cpu|cuda[:N]|xla) and the autocast dtype.

    ``auto`` takes XLA when ``PJRT_DEVICE`` is set and torch_xla imports, else CUDA when
    available, else CPU. ``auto``/``cuda`` on a host with several GPUs lists them all in
    ``devices`` (the current one first), so a generation places one candidate per GPU.
    bf16 autocast is used on XLA and on CUDA with bf16 support when
    precision is ``auto``; CPU trains in float32 unless ``bfloat16`` is asked for.
    """
    env = os.environ if env is None else env
    kind, device = "cpu", torch.device("cpu")
    if preference in ("auto", "xla") and env.get("PJRT_DEVICE"):
        xla = _xla_device(import_module)
        if xla is not None:
            kind, device = "xla", xla
        elif preference == "xla":
            raise RuntimeError("device=xla: torch_xla is not importable (install mutask[tpu])")
    elif preference == "xla":
        raise RuntimeError("device=xla: PJRT_DEVICE is not set (e.g. PJRT_DEVICE=TPU)")
    if kind == "cpu" and (preference == "auto" or preference.startswith("cuda")):
        if cuda_available():
            kind, device = "cuda", torch.device(preference if preference != "auto" else "cuda")
        elif preference.startswith("cuda"):
            raise RuntimeError(f"device={preference}: CUDA is not available")
    count = torch.cuda.device_count() if kind == "cuda" else 1
    devices = (device,)
    if kind == "cuda" and device.index is None and count > 1:
        # every visible GPU, one candidate per device; `cuda:N` asks for that GPU alone
        first = torch.cuda.current_device()
        devices += tuple(torch.device("cuda", i) for i in range(count) if i != first)
    if precision == "float32":
        amp = None
    elif (
        precision == "bfloat16"
        or kind == "xla"
        or (kind == "cuda" and torch.cuda.is_bf16_supported())
    ):
        amp = torch.bfloat16
    else:
        amp = None
    return DeviceChoice(device, kind, count, amp, devices)


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
