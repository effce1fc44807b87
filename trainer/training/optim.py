"""The optimizer of every candidate: SGD with momentum over the modules it owns, seeded with
the momentum buffers they inherited, and the copies of those buffers a candidate passes on."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from mutask.trainer.evolution import HValue


def make_optimizer(
    modules: Sequence[nn.Module],
    momentum_state: Sequence[Mapping[str, torch.Tensor]],
    hparams: Mapping[str, HValue],
    *,
    kind: type[torch.optim.SGD] = torch.optim.SGD,
    foreach: bool = True,
) -> torch.optim.SGD:
    """SGD (``kind``: torch's, or a device's variant of it) over the trainable modules,
    seeded with their inherited momentum buffers."""
    params = [p for m in modules for p in m.parameters()]
    opt = kind(
        params,
        lr=float(hparams["opt_lr"]),
        momentum=float(hparams["opt_momentum"]),
        nesterov=bool(hparams["opt_nesterov"]),
        foreach=foreach,
    )
    for module, state in zip(modules, momentum_state, strict=True):
        for name, p in module.named_parameters():
            buf = state.get(name)
            if buf is not None and buf.shape == p.shape:
                opt.state[p]["momentum_buffer"] = buf.detach().clone().to(p.device)
    return opt


def momentum_of(opt: torch.optim.Optimizer, module: nn.Module) -> dict[str, torch.Tensor]:
    """Copies of the optimizer's momentum buffers of ``module``'s parameters."""
    out: dict[str, torch.Tensor] = {}
    for name, p in module.named_parameters():
        buf = opt.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            out[name] = buf.detach().clone()
    return out
