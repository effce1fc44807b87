"""XLA's CPU backend vs eager CPU for the same candidates: compilations and step time.

A generation of K candidates (two architectures: a new head, or the top block + norm + head,
the rest a shared frozen root) trains in lockstep, first eagerly on the CPU, then on XLA's
CPU backend (``PJRT_DEVICE=CPU``) through the same trainer. Reported: graphs XLA compiled in
the first generation, in its rounds after the first, and in a second generation of the same
architectures with other hyperparameters (the last two should be 0); and the time per
candidate step of steady-state rounds (validation and the round end's host read included,
the first round excluded as warm-up), median over repeats. The last line is the ratio of
XLA's steps per second to eager's. Run it in CI's XLA venv:

    PJRT_DEVICE=CPU "$(bash .ci/xla-venv.sh)/bin/python" benchmarks/xla.py [--preset mu-tiny]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch_xla

from mutask.trainer.data import BatchStream
from mutask.trainer.evolution import architecture
from mutask.trainer.models import PathModel, build_component, get_shape
from mutask.trainer.training import Candidate, Lockstep, TrainSettings
from mutask.trainer.training.xla import compilations

HP = {"opt_lr": 0.05, "opt_momentum": 0.9, "opt_nesterov": False, "opt_lr_warmup_ratio": 0.1}


def generation(
    device: torch.device, args: argparse.Namespace, variant: int
) -> tuple[list[float], int, int]:
    """Train one generation on ``device``: seconds per candidate step of each round after
    the first, graphs compiled in the first round, and in the rounds after it."""
    shape = get_shape(args.preset, args.image_size)
    gen = torch.Generator().manual_seed(0)
    names = architecture(shape.depth, set())
    root = {n: build_component(n, shape, num_classes=10, generator=gen) for n in names}
    for module in root.values():
        module.to(device).requires_grad_(False)
    top = {f"encoderblock_{shape.depth - 1}", "encoder_norm", "head"}
    candidates = []
    for k in range(args.candidates):
        own = {"head"} if k % 2 == 0 else top
        hp = {
            **HP,
            "opt_lr": HP["opt_lr"] * (1 + 0.1 * k + variant),
            "opt_momentum": 0.9 - 0.01 * k,
        }
        comps, trainable = [], []
        for name in names:
            module = root[name]
            if name in own:
                module = copy.deepcopy(module).requires_grad_(True)
                trainable.append(module)
            comps.append((name, module))
        prefix = tuple(names[: min(names.index(n) for n in own)])
        model = PathModel(comps)
        candidates.append(Candidate(model, trainable, [{} for _ in trainable], hp, prefix=prefix))
    x = torch.rand(2048, 3, shape.image_size, shape.image_size, generator=gen) * 2 - 1
    y = torch.randint(0, 10, (2048,), generator=gen)
    settings = TrainSettings(args.rounds, args.steps, eval_batch_size=128)
    stream = BatchStream(x, y, args.batch, seed=0, augmenter=None)
    per_step: list[float] = []
    with Lockstep(candidates, iter(stream), (x[:256], y[:256]), settings) as loop:
        first = compilations()
        loop.train_round()
        warm = compilations()
        for _ in range(args.rounds - 1):
            t0 = time.perf_counter()
            loop.train_round()  # ends reading every candidate's accuracy: the work is done
            per_step.append((time.perf_counter() - t0) / (args.steps * len(candidates)))
        later = compilations()
        loop.finish()
    return per_step, warm - first, later - warm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="mu-tiny")
    ap.add_argument("--image-size", type=int, default=16)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    if args.rounds < 2:
        ap.error("--rounds must be >= 2 (the first round is warm-up)")
    torch.set_num_threads(args.threads)
    xla = torch_xla.device()
    eager, _, _ = generation(torch.device("cpu"), args, 0)
    steps, first_gen, rounds_after = generation(xla, args, 0)
    _, second_gen_first, second_gen_after = generation(xla, args, 1)
    eager_s, xla_s = statistics.median(eager), statistics.median(steps)
    print(
        f"preset={args.preset} image={args.image_size} candidates={args.candidates} "
        f"(2 architectures) batch={args.batch} rounds={args.rounds}x{args.steps} "
        f"threads={args.threads}"
    )
    print(f"XLA compilations, generation 1: {first_gen} in round 1, {rounds_after} after it")
    print(
        "XLA compilations, generation 2 (same architectures, other hparams): "
        f"{second_gen_first + second_gen_after}"
    )
    print(f"eager CPU: {eager_s * 1e3:.2f} ms per candidate step (median)")
    print(f"XLA CPU:   {xla_s * 1e3:.2f} ms per candidate step (median)")
    print(f"ratio XLA/eager steps per second: {eager_s / xla_s:.3f}")


if __name__ == "__main__":
    main()
