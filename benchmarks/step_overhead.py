"""Candidate-training throughput of mutask vs a hand-written PyTorch loop, same run.

Both train the same child path (a few cloned blocks + head + norm, the rest frozen and
shared) on the same batches for the same steps with the same optimizer, clipping and
validation rounds. mutask's side is `train_candidate` fed by its `BatchStream`; the baseline
is the plainest correct loop: index a random batch, forward, backward, clip, SGD step,
evaluate. Repeats alternate A/B and medians are compared. The last line is the ratio
(target >= 0.97).

    python benchmarks/step_overhead.py [--device cpu|cuda] [--preset mu-tiny] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.nn import functional as F

from mutask.trainer.data import BatchStream
from mutask.trainer.evolution import architecture
from mutask.trainer.models import PathModel, build_component, get_shape
from mutask.trainer.training import Candidate, TrainSettings, evaluate, train_candidate
from mutask.trainer.training.schedule import lr_at

HPARAMS = {"opt_lr": 0.05, "opt_momentum": 0.9, "opt_nesterov": False, "opt_lr_warmup_ratio": 0.05}


def build(
    preset: str, image_size: int, device: torch.device, cloned: int
) -> tuple[PathModel, list[torch.nn.Module]]:
    """A child path: the top ``cloned`` blocks, the norm and a new head are trainable."""
    shape = get_shape(preset, image_size)
    gen = torch.Generator().manual_seed(0)
    names = architecture(shape.depth, set())
    comps = [
        (n, build_component(n, shape, num_classes=10, generator=gen).to(device)) for n in names
    ]
    trainable_names = {f"encoderblock_{i}" for i in range(shape.depth - cloned, shape.depth)}
    trainable_names |= {"encoder_norm", "head"}
    own = []
    for name, module in comps:
        module.requires_grad_(name in trainable_names)
        if name in trainable_names:
            own.append(module)
    return PathModel(comps), own


def handwritten(
    model: PathModel,
    own: list[torch.nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    val: tuple[torch.Tensor, torch.Tensor],
    rounds: int,
    steps: int,
    batch: int,
) -> float:
    params = [p for m in own for p in m.parameters()]
    opt = torch.optim.SGD(params, lr=HPARAMS["opt_lr"], momentum=0.9, foreach=True)
    gen = torch.Generator(device="cpu").manual_seed(0)
    total, step = rounds * steps, 0
    model.train()
    for _ in range(rounds):
        for _ in range(steps):
            idx = torch.randint(0, x.shape[0], (batch,), generator=gen).to(x.device)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, HPARAMS["opt_lr"], HPARAMS["opt_lr_warmup_ratio"])
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(params, 1.0, foreach=True)
            opt.step()
            step += 1
        evaluate(model, *val)
    return float(step * batch)


def mutask_side(
    model: PathModel,
    own: list[torch.nn.Module],
    x: torch.Tensor,
    y: torch.Tensor,
    val: tuple[torch.Tensor, torch.Tensor],
    rounds: int,
    steps: int,
    batch: int,
) -> float:
    stream = BatchStream(x, y, batch, seed=0, augmenter=None)
    result, _ = train_candidate(
        Candidate(model, own, [{} for _ in own], HPARAMS),
        iter(stream),
        val,
        TrainSettings(rounds, steps),
    )
    return float(result.examples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--preset", default="mu-tiny")
    ap.add_argument("--image-size", type=int, default=16)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--cloned", type=int, default=2, help="trainable top blocks")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    device = torch.device(args.device)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4096, 3, args.image_size, args.image_size, generator=gen).to(device)
    y = torch.randint(0, 10, (4096,), generator=gen).to(device)
    val = (x[:512], y[:512])
    rates: dict[str, list[float]] = {"handwritten": [], "mutask": []}
    for rep in range(args.repeats + 1):  # first repeat is warm-up
        for name, fn in (("handwritten", handwritten), ("mutask", mutask_side)):
            model, own = build(args.preset, args.image_size, device, args.cloned)
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            examples = fn(model, own, x, y, val, args.rounds, args.steps, args.batch)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if rep:
                rates[name].append(examples / (time.perf_counter() - t0))
    hw, mt = (statistics.median(rates[k]) for k in ("handwritten", "mutask"))
    print(
        f"device={device} preset={args.preset} image={args.image_size} batch={args.batch} "
        f"steps={args.rounds}x{args.steps} cloned_blocks={args.cloned} repeats={args.repeats}"
    )
    print(f"hand-written loop: {hw:,.0f} examples/s (median)")
    print(f"mutask train_candidate: {mt:,.0f} examples/s (median)")
    print(f"ratio mutask/handwritten: {mt / hw:.3f}")


if __name__ == "__main__":
    main()
