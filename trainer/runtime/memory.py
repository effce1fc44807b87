"""Memory a run may use, and what a run needs: checked before anything large is allocated.

:func:`available_bytes` is the free memory of the device the run trains on: on a CPU the
kernel's ``MemAvailable``, capped by the cgroup v2 limit (a pod's memory limit) minus what
the cgroup already uses; on a GPU what CUDA reports free; unknown (None) on TPU.
:func:`training_bytes` is a lower-bound estimate of a task iteration's peak: the task's
prepared images (float32 at the system's image size), and per candidate trained at once its
weights, gradients and momentum plus one batch's activations.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from mutask.trainer.evolution import ViTShape, architecture

GIB = 1024**3
_FLOAT = 4  # bytes


def _meminfo_available(meminfo: Path) -> int | None:
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_headroom(cgroup: Path) -> int | None:
    """The cgroup v2 limit minus what it uses, not counting reclaimable (inactive) page cache."""
    try:
        limit = (cgroup / "memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int((cgroup / "memory.current").read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        for line in (cgroup / "memory.stat").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "inactive_file":
                used -= int(value)
    except (OSError, ValueError):
        pass
    return max(0, int(limit) - max(0, used))


def available_bytes(
    device: torch.device,
    *,
    meminfo: Path = Path("/proc/meminfo"),
    cgroup: Path = Path("/sys/fs/cgroup"),
) -> int | None:
    """Free memory for a run on ``device`` (see the module doc); None when unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    found = [b for b in (_meminfo_available(meminfo), _cgroup_headroom(cgroup)) if b is not None]
    return min(found) if found else None


@dataclass(frozen=True)
class MemoryNeed:
    """The estimate's parts, in bytes."""

    data: int
    per_candidate: int
    candidates: int

    @property
    def total(self) -> int:
        return self.data + self.per_candidate * self.candidates


def path_params(shape: ViTShape, num_classes: int) -> int:
    """Parameters of a full path of ``shape`` (stem, every block, head), no adapters."""
    return sum(
        shape.component_params(name, num_classes=num_classes)
        for name in architecture(shape.depth, set())
    )


def training_bytes(
    shape: ViTShape, num_classes: int, examples: int, batch_size: int, candidates: int
) -> MemoryNeed:
    """A lower-bound estimate of a task iteration's peak memory (see the module doc).

    Activations kept for the backward pass per example and layer: the residual stream, the
    attention's q/k/v and output, the MLP's two activations (~8 D + 2 M per token) and the
    attention probabilities (~3 H T^2: scores, softmax, dropout-free copy).
    """
    t, d, m, h = shape.tokens, shape.hidden, shape.mlp, shape.heads
    image = shape.channels * shape.image_size**2 * _FLOAT
    per_example = shape.depth * (t * (8 * d + 2 * m) + 3 * h * t * t) * _FLOAT + image
    weights = 3 * path_params(shape, num_classes) * _FLOAT  # params, grads, momentum
    return MemoryNeed(
        data=examples * image,
        per_candidate=weights + batch_size * per_example,
        candidates=max(1, candidates),
    )
