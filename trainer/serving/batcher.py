"""Dynamic batching: concurrent requests, for one task or several, computed as one window.

Requests wait in one queue. The loop takes the first, then keeps collecting for at most
``max_wait`` seconds or until ``max_rows`` rows are waiting (a request never splits), groups
the window's rows by task and runs :func:`~.shared_prefix.forward_window` on the one compute
thread, so common frozen prefixes are computed once for every task in the window. While a
window computes, the next one fills: under load windows grow by themselves. A request is
bound to the :class:`~.catalog.ServedTask` it was accepted for, so a reload in between
changes nothing for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch

from mutask.trainer.serving.catalog import ServedTask
from mutask.trainer.serving.shared_prefix import Group, forward_window


@dataclass
class Job:
    """One request's rows for one task, and the future its logits are delivered to."""

    task: ServedTask
    images: torch.Tensor
    future: asyncio.Future[torch.Tensor]
    queued: float = field(default_factory=time.perf_counter)

    @property
    def rows(self) -> int:
        return int(self.images.shape[0])


WindowObserver = Callable[[list[Group], float], None]
"""Called after each window with its groups and its compute seconds (metrics)."""


class Batcher:
    """The queue, the window loop and the compute thread of one server."""

    def __init__(
        self,
        device: torch.device,
        *,
        autocast: torch.dtype | None = None,
        max_rows: int = 64,
        max_wait: float = 0.002,
        share_prefixes: bool = True,
        observe: WindowObserver | None = None,
    ) -> None:
        if max_rows < 1 or max_wait < 0:
            raise ValueError(f"max_rows must be >= 1 and max_wait >= 0: {max_rows}, {max_wait}")
        self.device = device
        self.autocast = autocast
        self.max_rows = max_rows
        self.max_wait = max_wait
        self.share_prefixes = share_prefixes
        self.observe = observe
        self.queue: deque[Job] = deque()
        self.wakeup = asyncio.Event()
        self.executor = ThreadPoolExecutor(1, thread_name_prefix="mutask-serve")
        self.task: asyncio.Task[None] | None = None

    # -- client side ---------------------------------------------------------------------
    async def infer(self, task: ServedTask, images: torch.Tensor) -> torch.Tensor:
        """Logits [rows, classes] of ``task`` on ``images`` (rows <= max_rows)."""
        if images.shape[0] > self.max_rows:
            raise ValueError(f"{images.shape[0]} rows exceed the window's {self.max_rows}")
        future: asyncio.Future[torch.Tensor] = asyncio.get_running_loop().create_future()
        self.queue.append(Job(task, images, future))
        self.wakeup.set()
        return await future

    def waiting_rows(self) -> int:
        return sum(job.rows for job in self.queue)

    # -- the loop ------------------------------------------------------------------------
    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name="mutask-batcher")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        for job in self.queue:
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        self.queue.clear()
        self.executor.shutdown(wait=True)

    async def _window(self) -> list[Job]:
        while not self.queue:
            self.wakeup.clear()
            await self.wakeup.wait()
        deadline = time.perf_counter() + self.max_wait
        while self.waiting_rows() < self.max_rows:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            self.wakeup.clear()
            try:
                await asyncio.wait_for(self.wakeup.wait(), left)
            except TimeoutError:
                break
        jobs, rows = [], 0
        while self.queue and rows + self.queue[0].rows <= self.max_rows:
            job = self.queue.popleft()
            rows += job.rows
            if not job.future.done():  # a cancelled request (client gone) is skipped
                jobs.append(job)
        return jobs

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = await self._window()
            if not jobs:
                continue
            groups, members = self._groups(jobs)
            started = time.perf_counter()
            try:
                logits = await loop.run_in_executor(self.executor, self._compute, groups)
            except Exception as err:  # delivered to the requests, never kills the loop
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(err)
                continue
            if self.observe is not None:
                self.observe(groups, time.perf_counter() - started)
            for out, group_jobs in zip(logits, members, strict=True):
                start = 0
                for job in group_jobs:
                    if not job.future.done():
                        job.future.set_result(out[start : start + job.rows])
                    start += job.rows

    @staticmethod
    def _groups(jobs: list[Job]) -> tuple[list[Group], list[list[Job]]]:
        by_task: dict[int, list[Job]] = {}
        for job in jobs:  # keyed by the snapshot's object: two versions never mix
            by_task.setdefault(id(job.task), []).append(job)
        members = list(by_task.values())
        groups = [Group(js[0].task, torch.cat([j.images for j in js])) for js in members]
        return groups, members

    def _compute(self, groups: list[Group]) -> list[torch.Tensor]:
        return forward_window(groups, self.device, self.autocast, self.share_prefixes)
