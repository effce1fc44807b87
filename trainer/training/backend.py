"""What training does differently per device, behind one interface: eager (CPU, CUDA) or XLA.

The candidate trainer and the lockstep loop are written once (:mod:`.candidate`,
:mod:`.lockstep`); wherever a device needs its own behaviour they ask the :class:`Backend`
of the device their tensors live on (:func:`backend_for`):

- ``optimizer`` and ``learning_rate``: eager sets each step's scheduled rate as a float on
  torch's SGD (foreach kernels); XLA keeps the schedule on the device (no host value enters
  the graph, see :mod:`.xla`);
- ``foreach``: whether gradient clipping uses foreach kernels (XLA has none);
- ``boundary``: the end of a unit of device work (a step, a validation chunk, a round end).
  Eager runs every op at once, so it does nothing; XLA cuts the traced graph there
  (``torch_xla.sync()``), so each graph is one candidate's step, one chunk or one frozen
  layer, never a mix that depends on which candidates train together;
- ``feed``: training batches from the host (XLA: prefetched onto the device by torch-xla's
  loader; eager: used as they come, already on the device);
- ``inference``: the no-autograd context of validation (eager: ``inference_mode``; XLA:
  ``no_grad``, as torch-xla's tensors do not support inference mode);
- ``chunks``: validation data cut into batches (XLA: one fixed shape, the tail padded with
  label ``-1``, which no prediction matches, so padding never counts as correct).

Eager behaviour is exactly what the trainer did before backends existed: results on CPU and
CUDA do not depend on this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from mutask.trainer.evolution import HValue
from mutask.trainer.training.optim import make_optimizer

Batch = tuple[torch.Tensor, torch.Tensor]
SetLR = Callable[[int], None]


class Feed(Iterator[Batch]):
    """Training batches on the device; ``close`` stops any prefetching."""

    def __init__(self, batches: Iterator[Batch]) -> None:
        self.batches = batches

    def __next__(self) -> Batch:
        return next(self.batches)

    def close(self) -> None:
        return None


class Backend:
    """Eager execution (CPU, CUDA): every op runs when called; nothing to cut or prefetch."""

    foreach: bool | None = True

    def __init__(self, device: torch.device) -> None:
        self.device = device

    def optimizer(
        self,
        modules: Sequence[nn.Module],
        momentum: Sequence[Mapping[str, torch.Tensor]],
        hparams: Mapping[str, HValue],
    ) -> torch.optim.SGD:
        return make_optimizer(modules, momentum, hparams)

    def learning_rate(
        self, optimizer: torch.optim.Optimizer, lr_of: Callable[[int], float], total: int
    ) -> SetLR:
        """A setter of step ``s``'s learning rate ``lr_of(s)`` (of ``total`` steps)."""

        def set_lr(step: int) -> None:
            lr = lr_of(step)
            for group in optimizer.param_groups:
                group["lr"] = lr

        return set_lr

    def boundary(self) -> None:
        return None

    def inference(self) -> contextlib.AbstractContextManager[None]:
        return torch.inference_mode()

    def feed(self, batches: Iterator[Batch]) -> Feed:
        return Feed(batches)

    def chunks(self, images: torch.Tensor, labels: torch.Tensor, size: int) -> list[Batch]:
        """The examples in batches of ``size`` (views; the last one may be shorter)."""
        return [
            (images[i : i + size], labels[i : i + size]) for i in range(0, images.shape[0], size)
        ]

    def gather(self, parts: list[torch.Tensor], count: int) -> torch.Tensor:
        """The rows of ``parts`` (per-chunk outputs) for the ``count`` real examples."""
        return torch.cat(parts)


def backend_for(device: torch.device) -> Backend:
    """The backend of ``device``: XLA's for ``xla`` devices, else eager."""
    if device.type == "xla":
        from mutask.trainer.training.xla import XlaBackend  # needs torch_xla

        return XlaBackend(device)
    return Backend(device)


def device_of(module: nn.Module, default: torch.device | None = None) -> torch.device:
    """Where ``module``'s parameters live (``default``, else the CPU, if it has none)."""
    for p in module.parameters():
        return p.device
    return default if default is not None else torch.device("cpu")
