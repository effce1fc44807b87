"""Training a generation's candidates round by round, bit-identical to one by one.

:class:`Lockstep` trains candidates on one shared batch stream (all candidates of a
generation consume the same seeded batches): each batch is decoded and augmented once, the
frozen prefixes the candidates share are computed once per batch under ``no_grad`` (a
:class:`~mutask.trainer.training.prefix.PrefixTrie`), and each candidate's
:meth:`~mutask.trainer.training.candidate.CandidateTrainer.step` runs only its own part with
autograd. Frozen modules have ``requires_grad=False``, so autograd never computes their
weight gradients. Validation shares the prefixes too. ``train_round(active)`` trains the
given candidates for one round and validates them, so a caller can stop some candidates
after any round (successive halving) and resume the others.

With ``workers > 1`` the candidates' own parts run on that many threads at once (one
candidate per core on a CPU whose kernels run single-threaded: the paper's one candidate
per accelerator): torch kernels release the GIL, each candidate touches only its own modules
and state, and its kernels are the same in any thread, so results do not depend on
``workers``. Meanwhile the calling thread draws the next batch and computes its prefixes.

Batches come from the host through the device's feed and validation is cut into chunks once,
both the device's way (see :mod:`mutask.trainer.training.backend`): on XLA, prefetched onto
the chip, in fixed shapes, with a step boundary after each candidate's step, each frozen
prefix layer and each validation chunk, so no graph depends on which candidates share a chip.

:class:`OneByOne` is the reference way (every candidate on its own stream, full forward),
kept for the benchmark and for the test that asserts both ways give the same bits.
:func:`train_generation` runs every round of either; a single candidate is a generation of
one (:func:`train_candidate`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from functools import partial
from types import TracebackType
from typing import Protocol

import torch

from mutask.trainer.training.backend import backend_for
from mutask.trainer.training.candidate import (
    Batch,
    Candidate,
    CandidateResult,
    CandidateTrainer,
    Interrupted,
    Momentum,
    TrainSettings,
    accuracy,
    count_correct,
    mixed_precision,
    validation_chunks,
)
from mutask.trainer.training.prefix import PrefixTrie

OnStep = Callable[[int], None]
ShouldStop = Callable[[], bool]


class GenerationTrainer(Protocol):
    """Trains a generation's candidates round by round (a context manager)."""

    def train_round(self, active: Sequence[int] | None = None) -> list[float]:
        """Train candidates ``active`` (default all) for one round; their qualities."""
        ...

    def finish(self) -> list[tuple[CandidateResult, Momentum]]:
        """Restore every candidate's best snapshot; per candidate, result and momentum."""
        ...

    def __enter__(self) -> GenerationTrainer: ...

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


class Lockstep:
    """Candidates trained together on one batch stream, on one device (see module doc).

    ``on_step(n)`` is called after each candidate step with that candidate's step count;
    ``should_stop`` is polled after every candidate step (then :class:`Interrupted`).
    ``share_prefixes=False`` runs every candidate's full forward instead.
    """

    def __init__(
        self,
        candidates: Sequence[Candidate],
        batches: Iterator[Batch],
        validation: Batch,
        settings: TrainSettings,
        *,
        workers: int = 1,
        share_prefixes: bool = True,
        on_step: OnStep | None = None,
        should_stop: ShouldStop | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        device = candidates[0].device if candidates else validation[0].device
        self.backend = backend_for(device)
        self.trainers = [CandidateTrainer(c, settings) for c in candidates]
        self.batches = self.backend.feed(batches)
        self.chunks = validation_chunks(*validation, settings.eval_batch_size, device)
        self.examples = int(validation[0].shape[0])
        self.settings = settings
        self.trie = (
            PrefixTrie([c.prefix for c in candidates], self.backend.boundary)
            if share_prefixes
            else None
        )
        self.workers = min(workers, max(1, len(candidates)))
        self.on_step = on_step
        self.should_stop = should_stop
        self.lock = threading.Lock()
        self.executor: ThreadPoolExecutor | None = None

    def __enter__(self) -> Lockstep:
        if self.workers > 1:
            self.executor = ThreadPoolExecutor(self.workers, thread_name_prefix="mutask-candidate")
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.executor is not None:
            # on an error or Ctrl-C, queued candidate steps are dropped, running ones end
            self.executor.shutdown(wait=True, cancel_futures=True)
            self.executor = None
        self.batches.close()

    def train_round(self, active: Sequence[int] | None = None) -> list[float]:
        """One round of ``steps_per_round`` steps of candidates ``active`` (default all),
        then their validation; their qualities, in the order given."""
        ks = list(range(len(self.trainers))) if active is None else list(active)
        for k in ks:
            self.trainers[k].candidate.model.train()
        start = time.perf_counter()
        self._steps(ks)
        share = (time.perf_counter() - start) / max(1, len(ks))
        correct = self._validate(ks)
        qualities = [accuracy(c, self.examples) for c in correct]  # round end
        for k, quality in zip(ks, qualities, strict=True):
            self.trainers[k].result.train_seconds += share
            self.trainers[k].end_round(quality)
        return qualities

    def finish(self) -> list[tuple[CandidateResult, Momentum]]:
        return [t.finish() for t in self.trainers]

    # -- one round -------------------------------------------------------------------------
    def _steps(self, ks: list[int]) -> None:
        """``steps_per_round`` steps of every candidate in ``ks`` on shared batches.

        With workers, while they train on a batch this thread already draws the next one
        and computes its shared prefixes, so decoding, augmenting and the prefixes overlap
        the candidates' own work.
        """
        n = self.settings.steps_per_round
        x, y = next(self.batches)
        inputs = self._inputs(x, ks)
        for i in range(n):
            jobs = [(k, h, y) for k, h in zip(ks, inputs, strict=True)]
            if self.executor is None:
                for job in jobs:
                    self._step(*job)
                if i + 1 < n:
                    x, y = next(self.batches)
                    inputs = self._inputs(x, ks)
                continue
            futures = [self.executor.submit(self._step, *job) for job in jobs]
            try:
                if i + 1 < n:
                    x, y = next(self.batches)
                    inputs = self._inputs(x, ks)
            finally:
                wait(futures)
            _first_error(futures)

    def _step(self, k: int, inputs: torch.Tensor, labels: torch.Tensor) -> None:
        trainer = self.trainers[k]
        trainer.step(inputs, labels, self._start(k))
        if self.on_step is not None:
            with self.lock:
                self.on_step(trainer.steps)
        if self.should_stop is not None and self.should_stop():
            raise Interrupted("stop requested during training")

    def _start(self, k: int) -> int:
        """Where candidate ``k``'s forward starts: after its shared prefix, or at the images."""
        return self.trainers[k].candidate.split if self.trie is not None else 0

    def _inputs(
        self, x: torch.Tensor, ks: list[int], inference: bool = False
    ) -> list[torch.Tensor]:
        """Every candidate's input for batch ``x``: its frozen-prefix activation, shared
        parts computed once (under ``no_grad``, or the device's inference mode for validation)."""
        if self.trie is None:
            return [x for _ in ks]
        grad = self.backend.inference() if inference else torch.no_grad()
        with mixed_precision(x.device, self.settings.autocast), grad:
            out = [
                self.trie.activation(c.prefix, c.prefix_modules(), x)
                for c in (self.trainers[k].candidate for k in ks)
            ]
        self.trie.clear()
        return out

    def _validate(self, ks: list[int]) -> list[torch.Tensor]:
        """Correct predictions of candidates ``ks`` on the validation set (device counts)."""
        correct = [torch.zeros((), dtype=torch.int64, device=self.backend.device) for _ in ks]
        self.backend.boundary()  # the counts start as device data: every chunk, one graph
        for k in ks:
            self.trainers[k].candidate.model.eval()
        try:
            for x, y in self.chunks:
                inputs = self._inputs(x, ks, inference=True)
                self._map(partial(self._count, ks, inputs, y, correct), len(ks))
        finally:
            for k in ks:
                self.trainers[k].candidate.model.train()
        return correct

    def _count(
        self,
        ks: list[int],
        inputs: list[torch.Tensor],
        labels: torch.Tensor,
        correct: list[torch.Tensor],
        j: int,
    ) -> None:
        """Add candidate ``ks[j]``'s correct predictions on one chunk to ``correct[j]``."""
        candidate = self.trainers[ks[j]].candidate
        with self.backend.inference(), mixed_precision(labels.device, self.settings.autocast):
            logits = candidate.forward(inputs[j], self._start(ks[j]))
            correct[j] += count_correct(logits, labels)
        self.backend.boundary()

    def _map(self, fn: Callable[[int], None], n: int) -> None:
        """``fn(j)`` for ``j < n``: in order here, or over the worker threads; every call
        ends before this returns, and the first error (in order) is re-raised."""
        if self.executor is None:
            for j in range(n):
                fn(j)
            return
        futures = [self.executor.submit(fn, j) for j in range(n)]
        wait(futures)
        _first_error(futures)


def _first_error(futures: Sequence[Future[None]]) -> None:
    for f in futures:  # in candidate order
        f.result()


class OneByOne:
    """The reference way: every candidate on its own batch stream with its full forward."""

    def __init__(
        self,
        candidates: Sequence[Candidate],
        make_batches: Callable[[], Iterator[Batch]],
        validation: Batch,
        settings: TrainSettings,
        *,
        on_step: OnStep | None = None,
        should_stop: ShouldStop | None = None,
    ) -> None:
        self.should_stop = should_stop
        self.alone = [
            Lockstep(
                [c],
                make_batches(),
                validation,
                settings,
                share_prefixes=False,
                on_step=on_step,
                should_stop=should_stop,
            )
            for c in candidates
        ]

    def __enter__(self) -> OneByOne:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        err: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for alone in self.alone:
            alone.__exit__(kind, err, tb)

    def train_round(self, active: Sequence[int] | None = None) -> list[float]:
        qualities: list[float] = []
        for k in range(len(self.alone)) if active is None else active:
            if self.should_stop is not None and self.should_stop():
                raise Interrupted("stop requested between candidates")
            qualities += self.alone[k].train_round()
        return qualities

    def finish(self) -> list[tuple[CandidateResult, Momentum]]:
        return [alone.finish()[0] for alone in self.alone]


def train_rounds(trainer: GenerationTrainer, rounds: int) -> list[tuple[CandidateResult, Momentum]]:
    """Every round of every candidate, then the best snapshots restored."""
    with trainer:
        for _ in range(rounds):
            trainer.train_round()
        return trainer.finish()


def train_generation(
    candidates: Sequence[Candidate],
    make_batches: Callable[[], Iterator[Batch]],
    validation: Batch,
    settings: TrainSettings,
    *,
    lockstep: bool = True,
    workers: int = 1,
    on_step: OnStep | None = None,
    should_stop: ShouldStop | None = None,
) -> list[tuple[CandidateResult, Momentum]]:
    """Train every candidate for ``settings.rounds`` rounds on one device.

    ``make_batches`` returns a fresh stream each call (all streams equal): lockstep calls it
    once, the reference way once per candidate. ``should_stop`` is also polled before
    training starts (lockstep) or before each candidate's round (the reference way).
    ``workers`` (lockstep only): candidates trained at once; results are the same for any
    value.
    """
    trainer: GenerationTrainer
    if lockstep:
        if should_stop is not None and should_stop():
            raise Interrupted("stop requested before training")
        trainer = Lockstep(
            candidates,
            make_batches(),
            validation,
            settings,
            workers=workers,
            on_step=on_step,
            should_stop=should_stop,
        )
    else:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        trainer = OneByOne(
            candidates,
            make_batches,
            validation,
            settings,
            on_step=on_step,
            should_stop=should_stop,
        )
    return train_rounds(trainer, settings.rounds)


def train_candidate(
    candidate: Candidate,
    batches: Iterator[Batch],
    validation: Batch,
    settings: TrainSettings,
    *,
    on_step: OnStep | None = None,
    should_stop: ShouldStop | None = None,
) -> tuple[CandidateResult, Momentum]:
    """Train one candidate on ``batches``: a generation of one."""
    loop = Lockstep(
        [candidate], batches, validation, settings, on_step=on_step, should_stop=should_stop
    )
    return train_rounds(loop, settings.rounds)[0]
