"""One candidate per device: a generation's K candidates split over several accelerators.

As the paper places one child per accelerator, candidate ``k`` of a generation trains on
``devices[k % n]``. Each device's group is trained by
:func:`~mutask.trainer.generation.train_generation` (lockstep, shared frozen prefixes) in its
own thread; torch kernels release the GIL, so the groups overlap. Device slot 0 is the pool's
own device and uses the live modules; every other slot reads frozen components from the
pool's per-slot replica cache (bit-identical, ``requires_grad=False``) and gets its
candidates' own components materialised on its device.

Results do not depend on thread timing: everything shared (materialising, replicating,
batch streams) is set up on the calling thread in candidate order, each group touches only
its own modules, each group's training is deterministic, and the results come back in
candidate order after every group finished, with the candidates' own modules and momentum
moved back to the pool's device, so the engine reports, checkpoints and publishes as with one
device. A failure or stop in one group stops the others; the first error is re-raised.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence

import torch

from mutask.trainer.evolution import ChildPlan
from mutask.trainer.generation import CandidateSpec, Momentum, frozen_prefix, train_generation
from mutask.trainer.models import PathModel
from mutask.trainer.pool import ComponentPool
from mutask.trainer.training import Batch, CandidateResult, TrainSettings


def groups(candidates: int, devices: int) -> list[list[int]]:
    """Candidate indices per device slot: ``k`` goes to slot ``k % devices``."""
    return [list(range(slot, candidates, devices)) for slot in range(devices)]


def placed_spec(
    pool: ComponentPool,
    plan: ChildPlan,
    score_fn: Callable[[float], float],
    bar: float,
    slot: int,
    device: torch.device,
) -> CandidateSpec:
    """``candidate_spec`` on device slot ``slot``: own components there, frozen ones replicas."""
    own = {n.component.id: pool.materialize(n, device if slot else None) for n in plan.new}
    model = PathModel(
        [
            (name, own[cid] if cid in own else pool.replica(cid, slot, device))
            for name, cid in plan.path.components
        ]
    )
    return CandidateSpec(
        model=model,
        trainable=list(own.values()),
        momentum_state=[pool.momentum[c] for c in plan.trainable_ids],
        hparams=plan.path.hparams,
        score_fn=score_fn,
        bar=bar,
        prefix=frozen_prefix(plan),
    )


def _on(batches: Iterator[Batch], device: torch.device) -> Iterator[Batch]:
    for x, y in batches:
        yield x.to(device), y.to(device)


def train_placed(
    pool: ComponentPool,
    plans: Sequence[ChildPlan],
    score_fns: Sequence[Callable[[float], float]],
    bars: Sequence[float],
    devices: Sequence[torch.device],
    make_batches: Callable[[], Iterator[Batch]],
    validation: Batch,
    settings: TrainSettings,
    *,
    lockstep: bool = True,
    on_step: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[tuple[CandidateResult, Momentum]]:
    """Train ``plans`` split over ``devices`` (``devices[0]`` is the pool's); per candidate,
    in order, what ``train_generation`` would return, with everything on the pool's device."""
    n = len(devices)
    specs = [
        placed_spec(pool, plan, score_fns[k], bars[k], k % n, devices[k % n])
        for k, plan in enumerate(plans)
    ]  # materialised in candidate order
    work = [
        (slot, ks, [specs[k] for k in ks]) for slot, ks in enumerate(groups(len(plans), n)) if ks
    ]

    failed = threading.Event()
    lock = threading.Lock()
    first: list[BaseException] = []
    results: dict[int, tuple[CandidateResult, Momentum]] = {}

    def stop() -> bool:
        return failed.is_set() or (should_stop is not None and should_stop())

    def tick(step: int) -> None:
        if on_step is not None:
            with lock:
                on_step(step)

    def run(slot: int, ks: list[int], specs: list[CandidateSpec]) -> None:
        device = devices[slot]
        context = torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
        try:
            with context:
                val = (validation[0].to(device), validation[1].to(device))
                out = train_generation(
                    specs,
                    lambda: _on(make_batches(), device),
                    val,
                    settings,
                    lockstep=lockstep,
                    on_step=tick,
                    should_stop=stop,
                )
            for k, result in zip(ks, out, strict=True):
                results[k] = result
        except BaseException as err:  # handed to the calling thread
            with lock:
                if not failed.is_set():
                    first.append(err)
                    failed.set()

    threads = [
        threading.Thread(target=run, args=w, name=f"mutask-device-{w[0]}", daemon=True)
        for w in work
    ]
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    except BaseException:
        failed.set()  # e.g. Ctrl-C while waiting: stop the groups at their next step
        for t in threads:
            t.join()
        raise
    if first:
        raise first[0]

    home = pool.device
    out: list[tuple[CandidateResult, Momentum]] = []
    for k, plan in enumerate(plans):
        for cid in plan.trainable_ids:
            pool.to_home(cid)
        result, momentum = results[k]
        out.append((result, [{n: v.to(home) for n, v in m.items()} for m in momentum]))
    return out


__all__ = ["groups", "placed_spec", "train_placed"]
