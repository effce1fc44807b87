"""Resuming a killed task iteration: a checkpoint after every finished generation, restored
by the next run of the same config (same RNG state, same pending components), and the
case where the killed run's manifest had already landed (the state is cleared only after
the checks that follow the publish, so a retry finishes those instead of training again).
A damaged or unusable resume state is set aside (``resume.damaged.json``) and named in the
log, never an error.
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
from mutask.trainer.store.objects import StoreDamaged
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

    def _saved(self) -> dict[str, Any] | None:
        """The stored resume state; a damaged one is set aside (named in the log) and
        ignored, so it never blocks the task."""
        try:
            return self.store.load_resume(self.task)
        except StoreDamaged as err:
            aside = self.store.set_resume_aside(self.task)
            self.progress.log(
                f"task {self.task}: ignoring a damaged resume state ({err}); "
                f"moved to {self.store.uri}/{aside}, starting the iteration afresh"
            )
            return None

    def restore(self, it: TaskIteration, pool: ComponentPool) -> None:
        """Continue ``it`` from a checkpoint of this run, if there is a usable one."""
        saved = self._saved()
        if saved is None:
            return
        if saved.get("fingerprint") != self.run:
            self.progress.log(f"task {self.task}: ignoring a resume state from another run/config")
            return
        before = it.state_dict()
        loaded: list[str] = []
        try:
            it.load_state_dict(saved["state"])
            for cid, blob in saved["blobs"].items():
                loaded.append(cid)
                pool.load(it.pending[cid], str(blob), frozen=False)
        except (StoreDamaged, KeyError, TypeError, ValueError, AttributeError) as err:
            it.load_state_dict(before)  # back to a fresh iteration
            pool.drop(loaded)
            aside = self.store.set_resume_aside(self.task)
            self.progress.log(
                f"task {self.task}: cannot resume ({type(err).__name__}: {err}); resume state "
                f"moved to {self.store.uri}/{aside}, starting the iteration afresh"
            )
            return
        self.progress.log(f"task {self.task}: resumed at generation {it.generation}")

    def landed(self, previous: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """The manifest of a killed run of this config that landed before it finished (its
        resume state is kept until the no-forgetting check after the publish is done: the
        caller finishes that check, then :meth:`clear`), else None."""
        saved = self._saved()
        if previous is None or saved is None:
            return None
        run = previous.get("run")
        if run is None or run != saved.get("fingerprint") or not same_config(run, self.run):
            return None
        self.progress.log(
            f"task {self.task}: iteration {previous['iteration']} was already published "
            "by the interrupted run; finishing its checks instead of training again"
        )
        return previous

    def clear(self) -> None:
        self.store.clear_resume(self.task)


def same_config(a: str, b: str) -> bool:
    """Whether two run fingerprints come from the same config (their base generations may
    differ: a landed run's base is the generation before its own publish)."""
    return a.split("-", 1)[0] == b.split("-", 1)[0]
