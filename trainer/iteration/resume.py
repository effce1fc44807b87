"""Resuming a killed task iteration: a checkpoint after every finished generation, restored
by the next run of the same config (same RNG state, same pending components), and the
case where the killed run's manifest had already landed.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Mapping
from typing import Any

from mutask.trainer.config import IntroduceConfig
from mutask.trainer.evolution import TaskIteration
from mutask.trainer.iteration.pool import ComponentPool
from mutask.trainer.iteration.progress import Progress
from mutask.trainer.store.system_store import SystemStore


def fingerprint(cfg: IntroduceConfig, expected: int) -> str:
    """Identifies a resumable run: same config (minus runtime knobs), same base manifest."""
    d = cfg.to_dict()
    for key in ("metrics_port", "device", "agent_id"):
        d.pop(key, None)
    return f"{zlib.crc32(repr(sorted(d.items())).encode()):08x}-{expected}"


class Resume:
    """The resume state of one task in one store, for the run identified by ``run``."""

    def __init__(self, store: SystemStore, task: str, run: str, progress: Progress) -> None:
        self.store = store
        self.task = task
        self.run = run
        self.progress = progress

    def save(self, it: TaskIteration, pool: ComponentPool) -> None:
        """Checkpoint a finished generation: the iteration's state and pending components."""
        t0 = time.perf_counter()
        blobs = {cid: pool.save(cid)["blob"] for cid in sorted(it.pending)}
        self.store.save_resume(
            self.task, {"fingerprint": self.run, "state": it.state_dict(), "blobs": blobs}
        )
        self.progress.emit(
            event="checkpoint",
            checkpoint_seconds=time.perf_counter() - t0,
            generation=it.generation,
        )

    def restore(self, it: TaskIteration, pool: ComponentPool) -> None:
        """Continue ``it`` from a checkpoint of this run, if there is one."""
        saved = self.store.load_resume(self.task)
        if saved is None:
            return
        if saved.get("fingerprint") != self.run:
            self.progress.log(f"task {self.task}: ignoring a resume state from another run/config")
            return
        it.load_state_dict(saved["state"])
        for cid, blob in saved["blobs"].items():
            pool.load(it.pending[cid], blob, frozen=False)
        self.progress.log(f"task {self.task}: resumed at generation {it.generation}")

    def landed(
        self, previous: Mapping[str, Any] | None, *, clear: bool = True
    ) -> Mapping[str, Any] | None:
        """The manifest of a killed run of this config that landed before it cleared its
        resume state (then cleared now, unless ``clear`` is False), else None."""
        saved = self.store.load_resume(self.task)
        if previous is None or saved is None:
            return None
        if previous.get("run") is None or previous.get("run") != saved.get("fingerprint"):
            return None
        if clear:
            self.store.clear_resume(self.task)
        self.progress.log(
            f"task {self.task}: iteration {previous['iteration']} was already published "
            "by the interrupted run; not running it again"
        )
        return previous

    def clear(self) -> None:
        self.store.clear_resume(self.task)
