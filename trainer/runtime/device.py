"""Choosing the accelerator: torch-xla when PJRT_DEVICE is set and importable, CUDA, else CPU.

On XLA, XLA's persistent compilation cache is switched on first when ``MUTASK_XLA_CACHE``
names a folder (the operator's TPU Jobs mount a volume there), so graphs compiled by one
process are loaded, not compiled, by the next.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch

from mutask.contract import ENV_XLA_CACHE
from mutask.trainer.errors import DeviceError


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

    @property
    def data_device(self) -> torch.device:
        """Where task data lives: the device itself, except on XLA, where batches are made
        on the host and moved onto the chip by a prefetching loader (see
        :mod:`mutask.trainer.training.xla`)."""
        return torch.device("cpu") if self.kind == "xla" else self.device

    @property
    def precision(self) -> str:
        """The precision it trains and evaluates at: ``bfloat16`` (autocast) or ``float32``."""
        return precision_name(self.autocast)

    def describe(self) -> str:
        amp = f", autocast {self.autocast}" if self.autocast else ""
        split = f", candidates over {len(self.devices)}" if len(self.devices) > 1 else ""
        return f"{self.kind} ({self.device}, {self.count} device(s){split}{amp})"


def _xla_device(
    import_module: Callable[[str], object], env: Mapping[str, str]
) -> torch.device | None:
    try:
        xla = import_module("torch_xla")
    except ImportError:
        return None
    if env.get(ENV_XLA_CACHE):
        init_xla_cache(env[ENV_XLA_CACHE], import_module)
    device_fn = getattr(xla, "device", None)
    if callable(device_fn):
        dev = device_fn()
        return dev if isinstance(dev, torch.device) else torch.device(str(dev))
    xm = import_module("torch_xla.core.xla_model")
    return torch.device(str(xm.xla_device()))  # type: ignore[attr-defined]


def init_xla_cache(path: str, import_module: Callable[[str], object]) -> bool:
    """Switch on XLA's persistent compilation cache in folder ``path`` (before anything is
    compiled in this process); False if this process's cache already exists."""
    runtime = import_module("torch_xla.runtime")
    xla = import_module("torch_xla")
    if xla._XLAC._xla_computation_cache_is_initialized():  # type: ignore[attr-defined]
        return False
    os.makedirs(path, exist_ok=True)
    runtime.initialize_cache(path, readonly=False)  # type: ignore[attr-defined]
    return True


def on_xla(
    preference: str,
    env: Mapping[str, str],
    import_module: Callable[[str], object] = importlib.import_module,
) -> bool:
    """Whether ``preference`` (auto|cpu|cuda[:N]|xla) selects XLA here, as
    :func:`select_device` would, decided without starting XLA's runtime (the per-chip
    launcher must start before it); importing torch_xla does not start it."""
    if preference not in ("auto", "xla") or not env.get("PJRT_DEVICE"):
        return False
    try:
        import_module("torch_xla")
    except ImportError:
        return False
    return True


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
        xla = _xla_device(import_module, env)
        if xla is not None:
            kind, device = "xla", xla
        elif preference == "xla":
            raise DeviceError(
                "device", preference, "torch_xla is not importable (install mutask[tpu])"
            )
    elif preference == "xla":
        raise DeviceError("device", preference, "PJRT_DEVICE is not set (e.g. PJRT_DEVICE=TPU)")
    if kind == "cpu" and (preference == "auto" or preference.startswith("cuda")):
        if cuda_available():
            kind, device = "cuda", torch.device(preference if preference != "auto" else "cuda")
            gpus = torch.cuda.device_count()
            if device.index is not None and 0 < gpus <= device.index:
                raise DeviceError("device", preference, f"this host has {gpus} GPU(s)")
        elif preference.startswith("cuda"):
            raise DeviceError("device", preference, "CUDA is not available on this host")
    elif preference not in ("auto", "cpu", "xla") and not preference.startswith("cuda"):
        raise DeviceError("device", preference, "must be auto, cpu, cuda[:N] or xla")
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


PRECISIONS: dict[str, torch.dtype | None] = {"float32": None, "bfloat16": torch.bfloat16}


def precision_name(autocast: torch.dtype | None) -> str:
    """``float32`` (no autocast) or the autocast dtype's name, e.g. ``bfloat16``."""
    return next(name for name, dtype in PRECISIONS.items() if dtype == autocast)


def precision_dtype(name: str) -> torch.dtype | None:
    """The autocast dtype of a precision name (None for ``float32``)."""
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r} (known: {sorted(PRECISIONS)})")
    return PRECISIONS[name]


def device_model(choice: DeviceChoice) -> str:
    """Which kernels compute on this device, finer than its kind: reduced-precision results
    are bit-reproducible only on the same model (CPU: the instruction set torch dispatches
    to, e.g. AVX512 with native bf16 dot products vs AVX2; GPU: its name; TPU: PJRT's)."""
    if choice.kind == "cuda":
        return f"cuda {torch.cuda.get_device_name(choice.device)}"
    if choice.kind == "xla":
        return f"xla {os.environ.get('PJRT_DEVICE', '')}".strip()
    return f"cpu {torch.backends.cpu.get_cpu_capability()}"
