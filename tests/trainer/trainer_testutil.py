"""Small builders shared by the trainer unit tests (imported as a plain module).

Kept free of fixtures so every test file reads on its own: a tiny ViT shape, an SGD
hyperparameter dict, a three-layer toy model with a frozen middle, and a rooted System.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from mutask.trainer.evolution import ROOT_TASK, Component, Path, System, ViTShape, fresh_plan

SHAPE = ViTShape(hidden=8, depth=2, heads=2, mlp=16, patch=4, image_size=8)
ROOT_CLASSES = 5
Batch = tuple[torch.Tensor, torch.Tensor]

HP: dict[str, float | bool] = {
    "opt_lr": 0.1,
    "opt_lr_warmup_ratio": 0.1,
    "opt_momentum": 0.9,
    "opt_nesterov": False,
}


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread avoids OpenMP spinning on a busy CI machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def toy_model(seed: int = 0) -> tuple[nn.Sequential, list[nn.Module], nn.Module]:
    """``Linear(4,8) -> frozen Linear(8,8) -> Linear(8,3)``: (model, trainable, frozen)."""
    with torch.random.fork_rng():  # seeded init without touching the global RNG
        torch.manual_seed(seed)
        first, frozen, last = nn.Linear(4, 8), nn.Linear(8, 8), nn.Linear(8, 3)
    frozen.requires_grad_(False)
    return nn.Sequential(first, frozen, last), [first, last], frozen


def toy_data(n: int = 32, seed: int = 1) -> Batch:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def forever(batch: Batch) -> Iterator[Batch]:
    while True:
        yield batch


def snapshot(modules: list[nn.Module]) -> list[dict[str, torch.Tensor]]:
    return [{k: v.detach().clone() for k, v in m.state_dict().items()} for m in modules]


def same_state(a: list[dict[str, torch.Tensor]], b: list[dict[str, torch.Tensor]]) -> bool:
    return all(
        da.keys() == db.keys() and all(torch.equal(da[k], db[k]) for k in da)
        for da, db in zip(a, b, strict=True)
    )


def rooted_system() -> System:
    """A System with a fresh root path and two tasks that share the root's trunk.

    ``digits`` owns a new head; ``private:x`` owns a new head and its own last block.
    """
    system = System(SHAPE)
    plan = fresh_plan(f"{ROOT_TASK}~0", ROOT_TASK, SHAPE, {"num_layers": 2}, ROOT_CLASSES)
    system.add_components(n.component for n in plan.new)
    system.retain(plan.path.scored(0.5, 0.5))
    root = plan.path
    for task, own in (("digits", {"head"}), ("private:x", {"head", "encoderblock_1"})):
        refs = []
        for name, cid in root.components:
            if name in own:
                classes = 10 if name == "head" else 0
                comp = Component(
                    f"{task}~1/{name}",
                    name,
                    SHAPE.component_params(name, num_classes=classes),
                    classes,
                )
                system.add_components([comp])
                cid = comp.id
            refs.append((name, cid))
        system.retain(
            Path(
                f"{task}~1",
                task,
                {"num_layers": 2},
                tuple(refs),
                parent=root.id,
                quality=0.75,
                score=0.7,
            )
        )
    return system
