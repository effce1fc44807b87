"""Training all K candidates of a generation together, bit-identical to training them one by one.

All candidates of a generation consume the same seeded batch stream, so mutask's way
(``lockstep=True``) decodes and augments each batch once, then, for every group of
candidates that share a leading run of frozen components (same component ids), computes that
prefix once per batch under ``no_grad`` and runs only each candidate's own suffix with
autograd. Prefixes form a trie: candidates sharing only part of a prefix share that part.
Frozen modules have ``requires_grad=False``, so autograd never computes their weight
gradients; tensors stay on the batch's device. Each candidate keeps its own SGD optimizer,
learning-rate schedule, global-norm clipping over its own parameters and best-snapshot rule,
exactly as :func:`~mutask.trainer.training.train_candidate`; validation shares the prefixes
too. With ``workers > 1`` the candidates' own parts run on that many threads at once (one
candidate per core on a CPU whose kernels run single-threaded), with the same bits.
``lockstep=False`` is the reference way (each candidate on its own stream, full forward) and
is kept for the benchmark and for the test that asserts both give the same bits.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from mutask.trainer.evolution import ChildPlan, HValue
from mutask.trainer.models import PathModel
from mutask.trainer.pool import ComponentPool
from mutask.trainer.training import (
    Batch,
    CandidateResult,
    Interrupted,
    RoundResult,
    TrainSettings,
    _autocast,
    lr_at,
    make_optimizer,
    momentum_of,
    train_candidate,
)

Momentum = list[dict[str, torch.Tensor]]
Prefix = tuple[str, ...]


@dataclass(frozen=True)
class CandidateSpec:
    """One candidate as the per-candidate loop would train it, plus its frozen prefix ids."""

    model: PathModel
    trainable: Sequence[nn.Module]
    momentum_state: Sequence[Mapping[str, torch.Tensor]]
    hparams: Mapping[str, HValue]
    score_fn: Callable[[float], float]
    bar: float
    prefix: Prefix = ()

    @property
    def split(self) -> int:
        """Where the candidate's own part starts (length of its frozen prefix)."""
        return len(self.prefix)


def frozen_prefix(plan: ChildPlan) -> Prefix:
    """Component ids of the plan's leading run of components it does not own (frozen)."""
    own = set(plan.trainable_ids)
    ids: list[str] = []
    for cid in plan.path.component_ids:
        if cid in own:
            break
        ids.append(cid)
    return tuple(ids)


def candidate_spec(
    pool: ComponentPool,
    plan: ChildPlan,
    score_fn: Callable[[float], float],
    bar: float,
) -> CandidateSpec:
    """Materialise a plan's own components in the pool and describe it for training."""
    own = [pool.materialize(n) for n in plan.new]
    return CandidateSpec(
        model=pool.model(plan.path),
        trainable=own,
        momentum_state=[pool.momentum[c] for c in plan.trainable_ids],
        hparams=plan.path.hparams,
        score_fn=score_fn,
        bar=bar,
        prefix=frozen_prefix(plan),
    )


def train_generation(
    candidates: Sequence[CandidateSpec],
    make_batches: Callable[[], Iterator[Batch]],
    validation: Batch,
    settings: TrainSettings,
    *,
    lockstep: bool = True,
    on_step: Callable[[int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    workers: int = 1,
) -> list[tuple[CandidateResult, Momentum]]:
    """Train every candidate; per candidate, what ``train_candidate`` would return.

    ``make_batches`` must return a fresh stream each call (all streams equal): the sequential
    way calls it once per candidate, lockstep once. ``on_step`` is called once per candidate
    step; ``should_stop`` is polled before each (sequential) or all (lockstep) candidates and
    after every candidate step. ``workers`` (lockstep only): threads training candidates
    concurrently after the shared prefixes (see :class:`_Lockstep`); results are the same
    for any value.
    """
    if not lockstep:
        out: list[tuple[CandidateResult, Momentum]] = []
        for c in candidates:
            if should_stop is not None and should_stop():
                raise Interrupted("stop requested between candidates")
            out.append(
                train_candidate(
                    c.model,
                    c.trainable,
                    c.momentum_state,
                    c.hparams,
                    make_batches(),
                    validation,
                    c.score_fn,
                    c.bar,
                    settings,
                    on_step=on_step,
                    should_stop=should_stop,
                )
            )
        return out
    if should_stop is not None and should_stop():
        raise Interrupted("stop requested before training")
    loop = _Lockstep(candidates, settings, workers)
    return loop.run(make_batches(), validation, on_step, should_stop)


class _State:
    """One candidate's optimizer, schedule and best snapshot (as in ``train_candidate``)."""

    def __init__(self, spec: CandidateSpec, settings: TrainSettings) -> None:
        self.spec = spec
        self.opt = make_optimizer(spec.trainable, spec.momentum_state, spec.hparams)
        self.params = [p for g in self.opt.param_groups for p in g["params"]]
        self.total = settings.rounds * settings.steps_per_round
        self.base_lr = float(spec.hparams["opt_lr"])
        self.warmup = float(spec.hparams["opt_lr_warmup_ratio"])
        self.result = CandidateResult(None, None)
        self.best_state: list[dict[str, torch.Tensor]] | None = None
        self.best_momentum: Momentum = [dict(s) for s in spec.momentum_state]

    def set_lr(self, step: int) -> None:
        lr = lr_at(step, self.total, self.base_lr, self.warmup)
        for group in self.opt.param_groups:
            group["lr"] = lr

    def end_round(self, rnd: int, quality: float) -> None:
        score = self.spec.score_fn(quality)
        result = self.result
        snapshot = score >= self.spec.bar and (result.score is None or score > result.score)
        if snapshot:
            result.quality, result.score = quality, score
            self.best_state = [
                {k: v.detach().clone() for k, v in m.state_dict().items()}
                for m in self.spec.trainable
            ]
            self.best_momentum = [momentum_of(self.opt, m) for m in self.spec.trainable]
        result.rounds.append(RoundResult(rnd, quality, score, snapshot))

    def finish(self, steps: int) -> tuple[CandidateResult, Momentum]:
        self.result.steps = steps
        if self.best_state is not None:
            for module, state in zip(self.spec.trainable, self.best_state, strict=True):
                module.load_state_dict(state)
        return self.result, self.best_momentum


class _PrefixTrie:
    """Computes each candidate's frozen-prefix activation once per input, sharing common parts.

    Only the prefixes themselves and the branch points between candidates are kept; the
    cache lives for one input batch (``clear``).
    """

    def __init__(self, specs: Sequence[CandidateSpec]) -> None:
        keep: set[Prefix] = {s.prefix for s in specs}
        for i, a in enumerate(specs):
            for b in specs[i + 1 :]:
                n = 0
                while n < min(a.split, b.split) and a.prefix[n] == b.prefix[n]:
                    n += 1
                keep.add(a.prefix[:n])
        self.keep = keep
        self.cache: dict[Prefix, torch.Tensor] = {}

    def clear(self) -> None:
        self.cache.clear()

    def activation(self, spec: CandidateSpec, x: torch.Tensor) -> torch.Tensor:
        """``spec.model.forward_until(x, spec.split)``, reusing cached shared prefixes."""
        start, h = 0, x
        for n in range(spec.split, 0, -1):
            hit = self.cache.get(spec.prefix[:n])
            if hit is not None:
                start, h = n, hit
                break
        for i in range(start, spec.split):
            h = spec.model.components[i](h)
            if spec.prefix[: i + 1] in self.keep:
                self.cache[spec.prefix[: i + 1]] = h
        return h


class _Lockstep:
    """The lockstep loop over one shared batch stream.

    With ``workers > 1`` the candidates' own parts (suffix forward, backward, optimizer step;
    suffix forward for validation) run concurrently on that many threads after the shared
    prefixes are computed on the calling thread: torch kernels release the GIL, so on a CPU
    with single-threaded kernels each core trains one candidate at a time (the paper's one
    candidate per accelerator). Each candidate touches only its own modules and state, and
    its kernels are the same in any thread, so results do not depend on ``workers``.
    """

    def __init__(
        self, specs: Sequence[CandidateSpec], settings: TrainSettings, workers: int = 1
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.specs = list(specs)
        self.settings = settings
        self.trie = _PrefixTrie(self.specs)
        self.workers = min(workers, max(1, len(self.specs)))
        self.executor: ThreadPoolExecutor | None = None
        self.lock = threading.Lock()

    def run(
        self,
        batches: Iterator[Batch],
        validation: Batch,
        on_step: Callable[[int], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> list[tuple[CandidateResult, Momentum]]:
        settings = self.settings
        states = [_State(s, settings) for s in self.specs]
        for s in self.specs:
            s.model.train()
        step = 0
        with contextlib.ExitStack() as stack:
            if self.workers > 1:
                self.executor = ThreadPoolExecutor(
                    self.workers, thread_name_prefix="mutask-candidate"
                )
                # on an error or Ctrl-C, queued candidate steps are dropped, running ones end
                stack.callback(self.executor.shutdown, wait=True, cancel_futures=True)
            try:
                for rnd in range(settings.rounds):
                    start = time.perf_counter()
                    self._round(states, batches, step, on_step, should_stop)
                    step += settings.steps_per_round
                    share = (time.perf_counter() - start) / max(1, len(states))
                    qualities = self.evaluate(validation)
                    for st, quality in zip(states, qualities, strict=True):
                        st.result.train_seconds += share
                        st.end_round(rnd, quality)
            finally:
                self.executor = None
        return [st.finish(step) for st in states]

    def _round(
        self,
        states: Sequence[_State],
        batches: Iterator[Batch],
        first: int,
        on_step: Callable[[int], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        """Steps ``first`` .. ``first + steps_per_round - 1`` of every candidate.

        Alone, each candidate's step computes its prefix through the trie as it goes. With
        workers, the shared prefixes of a batch are computed on this thread first, and while
        the workers train on a batch this thread already draws the next one and computes its
        prefixes, so decoding, augmenting and the shared prefixes overlap the candidates' own
        work.
        """
        n = self.settings.steps_per_round
        executor = self.executor
        if executor is None:
            for i in range(n):
                x, y = next(batches)
                for st in states:
                    self._train(st, first + i, x, y, None, on_step, should_stop)
                self.trie.clear()
            return
        x, y = next(batches)
        prefixes = self._prefixes(x)
        for i in range(n):
            futures = [
                executor.submit(self._train, st, first + i, x, y, h, on_step, should_stop)
                for st, h in zip(states, prefixes, strict=True)
            ]
            try:
                if i + 1 < n:
                    x, y = next(batches)
                    prefixes = self._prefixes(x)
            finally:
                wait(futures)
            for f in futures:  # the first error in candidate order
                f.result()

    def _prefixes(self, x: torch.Tensor, inference: bool = False) -> list[torch.Tensor]:
        """Every candidate's frozen-prefix activation of ``x``, shared parts computed once
        (under ``no_grad``, or ``inference_mode`` for validation)."""
        grad = torch.inference_mode() if inference else torch.no_grad()
        with _autocast(x.device, self.settings.autocast), grad:
            out = [self.trie.activation(s, x) for s in self.specs]
        self.trie.clear()
        return out

    def _map(self, fn: Callable[[int], None]) -> None:
        """``fn(k)`` for every candidate: in order here, or over the worker threads.

        Every call runs to its end before this returns; the first error (in candidate
        order) is re-raised.
        """
        if self.executor is None:
            for k in range(len(self.specs)):
                fn(k)
            return
        futures = [self.executor.submit(fn, k) for k in range(len(self.specs))]
        wait(futures)
        for f in futures:
            f.result()

    def _train(
        self,
        st: _State,
        step: int,
        x: torch.Tensor,
        y: torch.Tensor,
        prefix: torch.Tensor | None,
        on_step: Callable[[int], None] | None,
        should_stop: Callable[[], bool] | None,
    ) -> None:
        """One optimizer step of one candidate on batch ``(x, y)`` (``prefix``: its frozen
        prefix activation of ``x``, or None to compute it through the trie)."""
        spec = st.spec
        st.set_lr(step)
        with _autocast(x.device, self.settings.autocast):
            h = prefix
            if h is None:
                with torch.no_grad():
                    h = self.trie.activation(spec, x)
            loss = F.cross_entropy(spec.model.forward_from(h, spec.split), y)
        st.opt.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        if self.settings.clip_norm:
            torch.nn.utils.clip_grad_norm_(st.params, self.settings.clip_norm, foreach=True)
        st.opt.step()
        st.result.examples += x.shape[0]
        if on_step is not None:
            with self.lock:
                on_step(step + 1)
        if should_stop is not None and should_stop():
            raise Interrupted("stop requested during training")

    def evaluate(self, validation: Batch) -> list[float]:
        """Top-1 accuracy of every candidate, chunked exactly like ``training.evaluate``."""
        images, labels = validation
        size = self.settings.eval_batch_size
        correct = [torch.zeros((), dtype=torch.int64, device=images.device) for _ in self.specs]
        for s in self.specs:
            s.model.eval()
        try:
            for i in range(0, images.shape[0], size):
                chunk = _EvalChunk(self, images[i : i + size], labels[i : i + size], correct)
                self._map(chunk.count)
                self.trie.clear()
        finally:
            for s in self.specs:
                s.model.train()
        n = max(1, images.shape[0])
        return [float(c.item()) / n for c in correct]


class _EvalChunk:
    """One validation chunk: adds each candidate's correct predictions to ``correct[k]``."""

    def __init__(
        self, loop: _Lockstep, x: torch.Tensor, y: torch.Tensor, correct: list[torch.Tensor]
    ) -> None:
        self.loop, self.x, self.y, self.correct = loop, x, y, correct
        self.prefixes: list[torch.Tensor | None] = [None] * len(loop.specs)
        if loop.executor is not None:  # shared prefixes first, on the calling thread
            self.prefixes = list(loop._prefixes(x, inference=True))

    def count(self, k: int) -> None:
        spec = self.loop.specs[k]
        with torch.inference_mode(), _autocast(self.x.device, self.loop.settings.autocast):
            h = self.prefixes[k]
            if h is None:
                h = self.loop.trie.activation(spec, self.x)
            logits = spec.model.forward_from(h, spec.split)
            self.correct[k] += (logits.argmax(-1) == self.y).sum()


__all__ = ["CandidateSpec", "candidate_spec", "frozen_prefix", "train_generation"]
