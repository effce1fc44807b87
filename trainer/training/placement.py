"""One candidate per device: a generation's K candidates split over several accelerators.

As the paper places one child per accelerator, candidate ``k`` of a generation trains on
``devices[k % n]`` (its modules must already be there: see
:func:`~mutask.trainer.iteration.pool.pool_candidate`). Each device's group is a
:class:`~mutask.trainer.training.lockstep.Lockstep` (or the reference way) on its own copy of
the batch stream; every round, each group trains in its own thread (torch kernels release
the GIL, so the groups overlap) and the qualities come back in candidate order.

Results do not depend on thread timing: the groups share nothing mutable, each group's
training is deterministic, and results are merged in candidate order after every group
finished, with momentum moved to ``devices[0]`` (the pool's). A failure or stop in one
group stops the others at their next step; the first error is re-raised.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType

import torch

from mutask.trainer.training.candidate import (
    Batch,
    Candidate,
    CandidateResult,
    Interrupted,
    Momentum,
    TrainSettings,
)
from mutask.trainer.training.lockstep import (
    GenerationTrainer,
    Lockstep,
    OneByOne,
    OnStep,
    ShouldStop,
    train_rounds,
)


def groups(candidates: int, devices: int) -> list[list[int]]:
    """Candidate indices per device slot: ``k`` goes to slot ``k % devices``."""
    return [list(range(slot, candidates, devices)) for slot in range(devices)]


def _on(batches: Iterator[Batch], device: torch.device) -> Iterator[Batch]:
    for x, y in batches:
        yield x.to(device), y.to(device)


class Placed:
    """A generation split over ``devices``, trained round by round (a GenerationTrainer)."""

    def __init__(
        self,
        candidates: Sequence[Candidate],
        devices: Sequence[torch.device],
        make_batches: Callable[[], Iterator[Batch]],
        validation: Batch,
        settings: TrainSettings,
        *,
        lockstep: bool = True,
        on_step: OnStep | None = None,
        should_stop: ShouldStop | None = None,
    ) -> None:
        self.devices = list(devices)
        self.count = len(candidates)
        self.failed = threading.Event()
        self.lock = threading.Lock()
        self.outer_on_step = on_step
        self.outer_should_stop = should_stop
        self.slots: list[tuple[int, list[int], GenerationTrainer]] = []
        for slot, ks in enumerate(groups(len(candidates), len(self.devices))):
            if not ks:
                continue
            device = self.devices[slot]
            val = (validation[0].to(device), validation[1].to(device))
            mine = [candidates[k] for k in ks]
            group: GenerationTrainer
            if lockstep:
                stream = _on(make_batches(), device)
                group = Lockstep(
                    mine, stream, val, settings, on_step=self._tick, should_stop=self._stop
                )
            else:
                group = OneByOne(
                    mine,
                    lambda device=device: _on(make_batches(), device),  # type: ignore[misc]
                    val,
                    settings,
                    on_step=self._tick,
                    should_stop=self._stop,
                )
            self.slots.append((slot, ks, group))

    def _stop(self) -> bool:
        return self.failed.is_set() or (
            self.outer_should_stop is not None and self.outer_should_stop()
        )

    def _tick(self, step: int) -> None:
        if self.outer_on_step is not None:
            with self.lock:
                self.outer_on_step(step)

    def __enter__(self) -> Placed:
        for _, _, group in self.slots:
            group.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for _, _, group in self.slots:
            group.__exit__(kind, err, tb)

    def train_round(self, active: Sequence[int] | None = None) -> list[float]:
        """One round of candidates ``active`` (default all), every device at once."""
        wanted = list(range(self.count)) if active is None else list(active)
        quality: dict[int, float] = {}
        errors: list[BaseException] = []

        def run(slot: int, ks: list[int], group: GenerationTrainer) -> None:
            device = self.devices[slot]
            local = [i for i, k in enumerate(ks) if k in wanted]
            if not local:
                return
            context = (
                torch.cuda.device(device) if device.type == "cuda" else contextlib.nullcontext()
            )
            try:
                with context:
                    out = group.train_round(local)
                for i, q in zip(local, out, strict=True):
                    quality[ks[i]] = q
            except BaseException as err:  # handed to the calling thread
                with self.lock:
                    if not self.failed.is_set():
                        errors.append(err)
                        self.failed.set()

        threads = [
            threading.Thread(target=run, args=s, name=f"mutask-device-{s[0]}", daemon=True)
            for s in self.slots
        ]
        for t in threads:
            t.start()
        try:
            for t in threads:
                t.join()
        except BaseException:
            self.failed.set()  # e.g. Ctrl-C while waiting: stop the groups at their next step
            for t in threads:
                t.join()
            raise
        if errors:
            raise errors[0]
        return [quality[k] for k in wanted]

    def finish(self) -> list[tuple[CandidateResult, Momentum]]:
        """Per candidate, in order, its result and momentum (on ``devices[0]``)."""
        home = self.devices[0]
        results: dict[int, tuple[CandidateResult, Momentum]] = {}
        for _, ks, group in self.slots:
            for k, (result, momentum) in zip(ks, group.finish(), strict=True):
                results[k] = (result, [{n: v.to(home) for n, v in m.items()} for m in momentum])
        return [results[k] for k in range(self.count)]


def train_placed(
    candidates: Sequence[Candidate],
    devices: Sequence[torch.device],
    make_batches: Callable[[], Iterator[Batch]],
    validation: Batch,
    settings: TrainSettings,
    *,
    lockstep: bool = True,
    on_step: OnStep | None = None,
    should_stop: ShouldStop | None = None,
) -> list[tuple[CandidateResult, Momentum]]:
    """Train ``candidates`` (candidate ``k`` already on ``devices[k % n]``) for every round;
    per candidate, in order, its result and momentum on ``devices[0]``."""
    if should_stop is not None and should_stop():
        raise Interrupted("stop requested before training")
    placed = Placed(
        candidates,
        devices,
        make_batches,
        validation,
        settings,
        lockstep=lockstep,
        on_step=on_step,
        should_stop=should_stop,
    )
    return train_rounds(placed, settings.rounds)
