"""Benchmark: one µ2Net generation of K candidates, the reference way vs mutask's way.

The reference way trains each candidate on its own (its own decoded and augmented batch
stream, a full forward pass through the frozen layers, weight gradients of frozen layers
computed too); mutask's way trains all K in lockstep on one shared stream, computes shared
frozen prefixes once per batch, skips frozen weight gradients and, on a CPU, trains one
candidate per core at a time (:mod:`mutask.trainer.training.lockstep`). The K plans are real
µ2Net children (mutation of a root path with the large search space) for a new task on
sklearn digits. All ways start from the same materialised candidates.

On a CPU the reference is timed with 1 intra-op thread and with every core, and the faster
is the baseline; mutask's kernels run single-threaded. The script asserts that every
single-threaded way ends with bit-identical parameters, momentum and validation qualities
(multi-threaded kernels sum in another order, so for the reference with every core it
prints how far its parameters are from those bits), then prints candidates/hour of each
way and the ratio of mutask's way to the baseline (last line).

    python benchmarks/generation.py                       # CPU, a few minutes
    python benchmarks/generation.py --device cuda --preset s16 --image-size 64
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from mutask.trainer.config import DatasetConfig
from mutask.trainer.data import Augmenter
from mutask.trainer.evolution import (
    ROOT_TASK,
    ChildPlan,
    IterationConfig,
    System,
    TaskIteration,
    fresh_plan,
    large_space,
)
from mutask.trainer.evolution.hparams import DEPTH, MU
from mutask.trainer.iteration.pool import ComponentPool, pool_candidate
from mutask.trainer.iteration.taskdata import TaskDataCache
from mutask.trainer.models import get_shape
from mutask.trainer.runtime.device import select_device
from mutask.trainer.runtime.threads import auto_candidate_workers, available_cpus
from mutask.trainer.store.system_store import SystemStore
from mutask.trainer.training import (
    Batch,
    CandidateResult,
    Momentum,
    TrainSettings,
    train_generation,
)

Outcome = tuple[list[tuple[CandidateResult, Momentum]], list[list[torch.Tensor]], float]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu | cuda[:N] | auto")
    p.add_argument("--preset", default="mu-tiny", help="ViT preset of the root")
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--candidates", "-k", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=40, help="steps per validation round")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--validation", type=int, default=512, help="validation examples")
    p.add_argument(
        "--mu",
        type=float,
        default=None,
        help="the root's mutation probability µ (ladder 0.10..0.30; default 0.2)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU cores to use (default: all available); the reference is timed "
        "with 1 intra-op thread and with this many",
    )
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="mutask's candidates at once on a CPU (default: one per core, as the engine picks)",
    )
    p.add_argument("--repeats", type=int, default=3, help="timed runs per way (min is kept)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--reference-frozen-grads",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the reference way also computes (and discards) weight gradients "
        "of frozen layers, as the issue describes it (default: on; "
        "--no-reference-frozen-grads gives the stricter baseline)",
    )
    return p.parse_args(argv)


def make_generation(
    args: argparse.Namespace, pool_dir: str
) -> tuple[ComponentPool, TaskIteration, list[ChildPlan], dict[str, object]]:
    """A frozen random root in a pool, a new task's iteration and its K proposed plans."""
    device = select_device(args.device, "float32").device
    shape = get_shape(args.preset, args.image_size)
    space = large_space(max_layers=shape.depth, adapters=True, image_size=shape.image_size)
    hparams = space.defaults()
    hparams[DEPTH] = shape.depth
    if args.mu is not None:
        hparams[MU] = args.mu
    root_plan = fresh_plan(f"{ROOT_TASK}~0", ROOT_TASK, shape, hparams, 10)
    pool = ComponentPool(SystemStore.open(pool_dir), shape, device, {}, {}, args.seed)
    for new in root_plan.new:
        pool.materialize(new)
    root = root_plan.path.scored(0.5, 0.5)
    system = System(shape)
    system.add_components(n.component for n in root_plan.new)
    system.retain(root)
    pool.freeze(root.component_ids)
    it = TaskIteration(
        system,
        "bench",
        10,
        space,
        IterationConfig(generations=1, candidates=args.candidates),
        np.random.default_rng(args.seed),
    )
    data_hp = it.data_hparams()
    plans = [it.propose(k, data_hp) for k in range(args.candidates)]
    return pool, it, plans, dict(data_hp)


@dataclass(frozen=True)
class Way:
    """How one timed run trains the generation."""

    label: str
    lockstep: bool
    frozen_grads: bool = False
    threads: int = 1  # torch intra-op threads (CPU)
    workers: int = 1  # candidates at once (lockstep)


def run_once(
    pool: ComponentPool,
    it: TaskIteration,
    plans: Sequence[ChildPlan],
    make_batches: Callable[[], Iterator[Batch]],
    validation: Batch,
    settings: TrainSettings,
    way: Way,
) -> Outcome:
    """Materialise the plans afresh, train them one way; results, params and seconds.

    ``way.frozen_grads``: frozen modules get ``requires_grad`` during the run, so backward
    also computes their weight gradients (never applied: the optimizers hold only the
    candidates' own parameters), as a framework that differentiates the whole model does.
    """
    specs = [pool_candidate(pool, p, _scorer(it, p), it.bar(p.path)) for p in plans]
    own = {id(m) for s in specs for m in s.trainable}
    frozen = [m for s in specs for _, m in s.model.items() if id(m) not in own]
    if way.frozen_grads:
        for m in frozen:
            m.requires_grad_(True)
    device = validation[0].device
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(way.threads)
    _sync(device)
    start = time.perf_counter()
    try:
        results = train_generation(
            specs, make_batches, validation, settings, lockstep=way.lockstep, workers=way.workers
        )
        _sync(device)
    finally:
        torch.set_num_threads(threads)
        for m in frozen:
            m.requires_grad_(False)
            m.zero_grad(set_to_none=True)
    seconds = time.perf_counter() - start
    params = [
        [p.detach().cpu().clone() for m in s.trainable for p in m.parameters()] for s in specs
    ]
    return results, params, seconds


def _scorer(it: TaskIteration, plan: ChildPlan) -> Callable[[float], float]:
    return lambda q: it.breakdown(plan.path, q).score


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flop_bound(pool: ComponentPool, plans: Sequence[ChildPlan]) -> float:
    """Speed-up that sharing frozen prefixes can give at most, counting FLOPs only.

    Forward = the shape's FLOPs per component; backward = 2x forward for owned components,
    1x (input gradients only) for frozen ones after the first owned one, 0 before it.
    """
    shape = pool.shape

    def fwd(cid: str) -> int:
        c = pool.components[cid]
        return shape.component_flops(c.name, num_classes=c.num_classes, adapter_dim=c.adapter_dim)

    reference = shared = 0
    prefixes: set[tuple[str, ...]] = set()
    for plan in plans:
        ids, own = plan.path.component_ids, set(plan.trainable_ids)
        split = next((i for i, c in enumerate(ids) if c in own), len(ids))
        suffix = sum(fwd(c) * (3 if c in own else 2) for c in ids[split:])
        reference += sum(fwd(c) for c in ids[:split]) + suffix
        shared += suffix
        prefixes.update(tuple(ids[:i]) for i in range(1, split + 1))
    shared += sum(fwd(p[-1]) for p in prefixes)
    return reference / shared


def assert_identical(a: Outcome, b: Outcome) -> None:
    for (r1, m1), (r2, m2), p1, p2 in zip(a[0], b[0], a[1], b[1], strict=True):
        assert [(r.quality, r.score, r.snapshot) for r in r1.rounds] == [
            (r.quality, r.score, r.snapshot) for r in r2.rounds
        ], "validation differs"
        assert r1.quality == r2.quality and r1.score == r2.score, "best snapshot differs"
        assert all(torch.equal(x, y) for x, y in zip(p1, p2, strict=True)), "params differ"
        assert all(torch.equal(d1[k], d2[k]) for d1, d2 in zip(m1, m2, strict=True) for k in d1), (
            "momentum differs"
        )


def distance(a: Outcome, b: Outcome) -> str:
    """How far ``b`` is from ``a``: largest parameter difference, same validation choices?"""
    diff = max(
        float((x - y).abs().max())
        for p1, p2 in zip(a[1], b[1], strict=True)
        for x, y in zip(p1, p2, strict=True)
    )
    same = all(
        [(r.quality, r.snapshot) for r in r1.rounds] == [(r.quality, r.snapshot) for r in r2.rounds]
        for (r1, _), (r2, _) in zip(a[0], b[0], strict=True)
    )
    return (
        f"max |param difference| {diff:.1e}; validation accuracies and snapshots "
        f"{'the same' if same else 'differ'}"
    )


def ways_for(args: argparse.Namespace, device: torch.device, cores: int) -> dict[str, Way]:
    """The timed ways: the reference (per thread count on a CPU), then mutask's steps."""
    cpu = device.type == "cpu"
    workers = args.workers or auto_candidate_workers(device.type, 1, args.candidates, cores)
    ways: dict[str, Way] = {}
    for threads in sorted({1, cores} if cpu else {1}):
        ways[f"reference@{threads}"] = Way(
            "reference: own stream, full forward, frozen weight grads"
            + (f", {threads} thread(s)" if cpu else ""),
            lockstep=False,
            frozen_grads=args.reference_frozen_grads,
            threads=threads,
        )
    ways["one-by-one"] = Way("one by one, frozen weight grads skipped", lockstep=False)
    ways["lockstep"] = Way(
        "mutask lockstep: shared stream + prefixes, no frozen weight grads", lockstep=True
    )
    if workers > 1:
        ways["mutask"] = Way(
            f"mutask lockstep + {workers} candidates at once (1 per core)",
            lockstep=True,
            workers=workers,
        )
    return ways


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    cores = args.threads or available_cpus()
    choice = select_device(args.device, "float32")
    ways = ways_for(args, choice.device, cores)
    with tempfile.TemporaryDirectory() as tmp:
        pool, it, plans, data_hp = make_generation(args, tmp)
        data = TaskDataCache(choice.device).get(
            "bench", DatasetConfig(source="digits"), args.image_size
        )
        validation = data.validation.tensors(args.validation)
        augmenter = Augmenter(data_hp)

        def make_batches() -> Iterator[Batch]:
            return data.train.stream(args.batch_size, args.seed, augmenter)

        print(f"device {choice.describe()}, torch {torch.__version__}, {cores} CPU core(s)")
        print(
            f"root {args.preset} @ {args.image_size}px: "
            f"{sum(c.num_params for c in pool.components.values()):,} params; "
            f"K={args.candidates}, {args.rounds} rounds x {args.steps} steps of "
            f"{args.batch_size}, {len(validation[0])} validation examples"
        )
        for plan in plans:
            n_own = len(plan.new)
            prefix = next(
                (i for i, c in enumerate(plan.path.component_ids) if c in set(plan.trainable_ids)),
                len(plan.path.components),
            )
            print(
                f"  {plan.path.id}: {len(plan.path.components)} components, {n_own} own, "
                f"frozen prefix {prefix}"
            )
        warm = TrainSettings(rounds=1, steps_per_round=2)
        for way in ways.values():
            run_once(pool, it, plans, make_batches, validation, warm, way)
        settings = TrainSettings(rounds=args.rounds, steps_per_round=args.steps)
        runs: dict[str, list[Outcome]] = {w: [] for w in ways}
        for _ in range(args.repeats):  # alternate the ways so load drifts hit all of them
            for name, way in ways.items():
                runs[name].append(
                    run_once(pool, it, plans, make_batches, validation, settings, way)
                )
        bound = flop_bound(pool, plans)
    first = runs["one-by-one"][0]
    for name, outs in runs.items():
        for out in outs:
            if ways[name].threads == 1:
                assert_identical(first, out)
    best = {w: min(outs, key=lambda o: o[2]) for w, outs in runs.items()}
    print(
        "results identical: params, momentum, validation qualities and snapshots "
        "(bitwise, every single-threaded way)"
    )
    for name, way in ways.items():
        if way.threads > 1:
            print(f"{way.label}: {distance(first, runs[name][0])} (kernel threads reorder sums)")
    for name, out in best.items():
        print(
            f"{ways[name].label:70s} {out[2]:7.2f} s {3600.0 * len(plans) / out[2]:9.1f} "
            f"candidates/hour (best of {args.repeats})"
        )
    print(f"FLOP bound of prefix sharing alone for these plans: {bound:.2f}x")
    print(
        f"lockstep vs one-by-one (prefix sharing + shared stream): "
        f"{best['one-by-one'][2] / best['lockstep'][2]:.2f}x"
    )
    ref = min((n for n in ways if n.startswith("reference@")), key=lambda n: best[n][2])
    ours = "mutask" if "mutask" in ways else "lockstep"
    print(
        f"speed-up (mutask's way / the reference way at its best thread count, "
        f"{ways[ref].threads} thread(s), candidates per hour): "
        f"{best[ref][2] / best[ours][2]:.2f}x"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
