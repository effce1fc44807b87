"""Training on XLA (TPUs; XLA's CPU backend in tests): the XLA side of :mod:`.backend`.

XLA traces ops into a graph, compiles each distinct graph once and runs it at a step
boundary. Training compiles nothing new after warm-up when every graph has static shapes, no
host value baked into it, and a boundary wherever the work of one candidate ends:

- **learning rate**: a candidate's whole schedule is one device tensor, indexed by a step
  counter that lives on the device too; :class:`DeviceLRSGD` reads the rate as a tensor
  (torch's SGD turns a tensor rate into a host number: a device-to-host sync every step).
  Its momentum buffers start at zero, which gives torch's first update exactly, so the first
  step compiles the same graph as every other;
- **boundaries** (``torch_xla.sync()``): after each candidate's step, each frozen layer of
  the shared prefixes, each validation chunk, each round end; so a graph is one candidate's
  step (or one chunk, or one layer) and never depends on which candidates train together:
  the same candidate gives the same bits whatever else runs on its chip;
- **feed**: batches are made on the host (the same seeded, augmented batches as on the CPU)
  and moved onto the device ahead of use by torch-xla's ``ParallelLoader``;
- **chunks**: validation batches of one fixed shape, moved once; the tail is padded with
  label ``-1``, which no prediction matches.

Nothing here reads a value back to the host. Import only where torch_xla is installed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence

import torch
import torch_xla
import torch_xla.debug.metrics as metrics
from torch import nn
from torch_xla.distributed.parallel_loader import ParallelLoader

from mutask.trainer.evolution import HValue
from mutask.trainer.training.backend import Backend, Batch, Feed, SetLR
from mutask.trainer.training.optim import make_optimizer

PAD_LABEL = -1  # matches no prediction: padded examples never count as correct


class DeviceLRSGD(torch.optim.SGD):
    """torch's SGD with momentum (no dampening or weight decay), the learning rate read from
    :attr:`lr`, a 0-dim tensor on the parameters' device set before each step."""

    lr: torch.Tensor | None = None

    def fill_buffers(self) -> None:
        """Zero momentum buffers where none was inherited (the first update is then torch's:
        ``0 * momentum + grad`` is the gradient, torch's first buffer)."""
        for group in self.param_groups:
            if group["momentum"] != 0:
                for p in group["params"]:
                    state = self.state[p]
                    if "momentum_buffer" not in state:
                        state["momentum_buffer"] = torch.zeros_like(p)

    @torch.no_grad()  # type: ignore[misc]
    def step(self, closure: Callable[[], float] | None = None) -> None:  # type: ignore[override]
        if closure is not None or self.lr is None:
            raise ValueError("DeviceLRSGD steps without a closure, after its rate was set")
        for group in self.param_groups:
            momentum, nesterov = group["momentum"], group["nesterov"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                update = p.grad
                if momentum != 0:
                    buf = self.state[p].get("momentum_buffer")
                    if buf is None:
                        buf = self.state[p]["momentum_buffer"] = update.detach().clone()
                    else:
                        buf.mul_(momentum).add_(update)
                    update = update.add(buf, alpha=momentum) if nesterov else buf
                p.sub_(update * self.lr)


class DeviceSchedule:
    """Sets step ``s``'s learning rate from a table of every step's rate on the device.

    The step counter is a device tensor advanced inside the step's graph, so consecutive
    steps run the same graph with no host value; a jump to another step (not how training
    goes) moves the new counter over once. Past the table's end the last entry holds.
    """

    def __init__(self, optimizer: DeviceLRSGD, lrs: Sequence[float], device: torch.device) -> None:
        self.optimizer = optimizer
        self.table = torch.tensor(list(lrs), dtype=torch.float32).to(device)
        self.last = len(lrs) - 1
        self.device = device
        self.counter = torch.zeros((), dtype=torch.int64).to(device)
        self.next = 0

    def __call__(self, step: int) -> None:
        if step != self.next:
            self.counter = torch.tensor(min(step, self.last), dtype=torch.int64).to(self.device)
        self.optimizer.lr = self.table.index_select(0, self.counter.view(1)).view(())
        self.counter = torch.clamp(self.counter + 1, max=self.last)
        self.next = step + 1


class LoaderFeed(Feed):
    """Host batches moved onto ``device`` ahead of use by torch-xla's ``ParallelLoader``
    (a background thread; ``prefetch`` batches wait on the device)."""

    def __init__(self, batches: Iterator[Batch], device: torch.device, prefetch: int = 2) -> None:
        self.loader = ParallelLoader(
            batches, [device], loader_prefetch_size=prefetch, device_prefetch_size=prefetch
        )
        super().__init__(self.loader.per_device_loader(device))

    def close(self) -> None:
        self.loader.close()


class XlaBackend(Backend):
    """One XLA device (see the module doc)."""

    foreach = None  # torch's foreach kernels are not implemented for XLA tensors

    def optimizer(
        self,
        modules: Sequence[nn.Module],
        momentum: Sequence[Mapping[str, torch.Tensor]],
        hparams: Mapping[str, HValue],
    ) -> torch.optim.SGD:
        opt = make_optimizer(modules, momentum, hparams, kind=DeviceLRSGD, foreach=False)
        assert isinstance(opt, DeviceLRSGD)
        opt.fill_buffers()
        return opt

    def learning_rate(
        self, optimizer: torch.optim.Optimizer, lr_of: Callable[[int], float], total: int
    ) -> SetLR:
        if not isinstance(optimizer, DeviceLRSGD):
            raise TypeError(f"XLA trains with DeviceLRSGD, got {type(optimizer).__name__}")
        return DeviceSchedule(optimizer, [lr_of(s) for s in range(total + 1)], self.device)

    def boundary(self) -> None:
        torch_xla.sync()

    def inference(self) -> contextlib.AbstractContextManager[None]:
        return torch.no_grad()

    def feed(self, batches: Iterator[Batch]) -> Feed:
        return LoaderFeed(batches, self.device)

    def chunks(self, images: torch.Tensor, labels: torch.Tensor, size: int) -> list[Batch]:
        count = images.shape[0]
        size = max(1, min(size, count))
        x, y = images.to("cpu"), labels.to("cpu")
        out: list[Batch] = []
        for i in range(0, count, size):
            xs, ys = x[i : i + size], y[i : i + size]
            pad = size - xs.shape[0]
            if pad:
                xs = torch.cat([xs, xs.new_zeros((pad, *xs.shape[1:]))])
                ys = torch.cat([ys, ys.new_full((pad,), PAD_LABEL)])
            out.append((xs.to(self.device), ys.to(self.device)))
        return out

    def gather(self, parts: list[torch.Tensor], count: int) -> torch.Tensor:
        return torch.cat(parts)[:count]


def compilations() -> int:
    """Graphs XLA compiled in this process so far (torch_xla's ``CompileTime`` metric)."""
    data = metrics.metric_data("CompileTime")
    return int(data[0]) if data else 0
