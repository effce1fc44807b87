"""Fencing: at most one writer per task, through a lease object renewed by compare-and-swap.

``tasks/<task>/lease.json`` names its holder. The holder renews it from a background thread
(a CAS write on the generation it last wrote), and confirms it the same way right before
each write that matters (checkpoint, manifest). Whoever changed the object in between has
taken the task over, so the old holder's next renewal or confirmation fails and it stops
(:class:`LeaseLost`).

A newcomer that finds the lease held does not trust the holder's clock: it watches the
object. If the generation changes (the holder is alive and renewing) it gives up at once
with :class:`LeaseLost`; if nothing changes for a whole ``ttl`` the holder is dead (killed,
node lost) and the newcomer takes over by CAS. A released lease is taken at once. Leases of
different tasks are different objects, so tasks never block each other.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from types import TracebackType
from typing import Any

from mutask.trainer.errors import ConfigError
from mutask.trainer.store.layout import task_prefix
from mutask.trainer.store.objects import NotFound, ObjectStore, PreconditionFailed, StoreError

DEFAULT_TTL = 30.0
TTL_ENV = "MUTASK_LEASE_TTL"


class LeaseLost(StoreError):
    """Another writer holds (or took over) this task's lease: this one must not write."""


def default_ttl() -> float:
    """The lease time-to-live: ``$MUTASK_LEASE_TTL`` seconds, else 30."""
    raw = os.environ.get(TTL_ENV)
    if not raw:
        return DEFAULT_TTL
    try:
        ttl = float(raw)
    except ValueError:
        raise ConfigError(TTL_ENV, raw, "not a number of seconds") from None
    if not 0 < ttl < float("inf"):
        raise ConfigError(TTL_ENV, raw, "must be a positive number of seconds")
    return ttl


def new_holder_id(agent: str | None = None) -> str:
    """Unique per process: a restarted pod with the same agent id is a different holder."""
    return f"{agent or socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:8]}"


class Lease:
    """The lease of one task, held by this process while in the ``with`` block."""

    def __init__(
        self,
        objects: ObjectStore,
        task: str,
        *,
        holder: str | None = None,
        ttl: float | None = None,
        log: Callable[[str], None] = lambda _msg: None,
    ) -> None:
        self.objects = objects
        self.task = task
        self.key = task_prefix(task) + "lease.json"
        self.holder = holder or new_holder_id()
        self.ttl = default_ttl() if ttl is None else ttl
        self.renew_every = self.ttl / 3
        self.log = log
        self.generation: int | None = None
        self._lost: str | None = None
        self._last_ok = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def where(self) -> str:
        return f"{self.objects.uri}/{self.key}"

    def _body(self, *, released: bool = False) -> bytes:
        now = time.time()
        doc: dict[str, Any] = {
            "holder": self.holder,
            "task": self.task,
            "ttl": self.ttl,
            "renewed": now,
            "expires": 0.0 if released else now + self.ttl,
            "released": released,
        }
        return json.dumps(doc, sort_keys=True).encode()

    def _read(self) -> tuple[dict[str, Any], int] | None:
        try:
            data, gen = self.objects.read(self.key)
        except NotFound:
            return None
        try:
            doc: dict[str, Any] = json.loads(data)
        except json.JSONDecodeError:
            doc = {"holder": "?", "released": False}
        return doc, gen

    # -- acquire -----------------------------------------------------------------------------
    def acquire(self, *, poll: float | None = None) -> None:
        """Take the lease, waiting up to ``ttl`` for a silent (dead) holder; else LeaseLost."""
        poll = self.ttl / 10 if poll is None else poll
        watched: tuple[int, float] | None = None  # (generation, since) of someone else's lease
        while True:
            found = self._read()
            if found is None:
                if self._try_write(0):
                    return
                continue
            doc, gen = found
            if doc.get("holder") == self.holder or doc.get("released"):
                if self._try_write(gen):
                    return
                continue
            now = time.monotonic()
            if watched is None:
                watched = (gen, now)
            elif watched[0] != gen:
                raise LeaseLost(
                    f"task {self.task}: another writer ({doc.get('holder')}) holds the lease "
                    f"{self.where} and is renewing it; refusing to run a second writer"
                )
            elif now - watched[1] >= self.ttl:
                self.log(
                    f"task {self.task}: lease of {doc.get('holder')} silent for "
                    f"{self.ttl:g}s; taking over"
                )
                if self._try_write(gen):
                    return
                watched = None
                continue
            time.sleep(poll)

    def _try_write(self, expected: int) -> bool:
        try:
            self.generation = self.objects.write(self.key, self._body(), if_generation=expected)
        except PreconditionFailed:
            return False
        self._last_ok = time.monotonic()
        return True

    # -- hold --------------------------------------------------------------------------------
    def confirm(self) -> None:
        """Renew by CAS now; LeaseLost if someone else changed the lease since our last write."""
        with self._lock:
            self._raise_if_lost()
            assert self.generation is not None, "lease not acquired"
            try:
                self.generation = self.objects.write(
                    self.key, self._body(), if_generation=self.generation
                )
            except PreconditionFailed:
                found = self._read()
                if (
                    found is not None
                    and found[0].get("holder") == self.holder
                    and not found[0].get("released")
                ):
                    # our earlier write landed although its reply was lost: still ours
                    self.generation = found[1]
                    self._last_ok = time.monotonic()
                    return
                other = found[0].get("holder") if found else "nobody (deleted)"
                self._lost = (
                    f"task {self.task}: lost the lease {self.where} to {other}; "
                    "another writer took this task over, stopping"
                )
                self._raise_if_lost()
            except StoreError:
                if time.monotonic() - self._last_ok > self.ttl:
                    self._lost = (
                        f"task {self.task}: could not renew the lease {self.where} "
                        f"for {self.ttl:g}s; another writer may have taken over"
                    )
                    self._raise_if_lost()
                raise
            self._last_ok = time.monotonic()

    def _raise_if_lost(self) -> None:
        if self._lost is not None:
            raise LeaseLost(self._lost)

    def check(self) -> bool:
        """For polling between training steps: LeaseLost once the lease is lost, else False."""
        self._raise_if_lost()
        return False

    @property
    def lost(self) -> bool:
        return self._lost is not None

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.renew_every):
            try:
                self.confirm()
            except LeaseLost as err:
                self.log(str(err))
                return
            except StoreError as err:  # transient: the next tick retries
                self.log(f"task {self.task}: lease renewal failed, will retry: {err}")

    def release(self) -> None:
        """Stop renewing; mark the lease released (CAS) so a successor need not wait."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        with self._lock:
            if self._lost is not None or self.generation is None:
                return
            try:
                self.objects.write(
                    self.key, self._body(released=True), if_generation=self.generation
                )
            except StoreError as err:
                self.log(f"task {self.task}: could not release the lease: {err}")
            self.generation = None

    def __enter__(self) -> Lease:
        self.acquire()
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._renew_loop, name=f"lease-{self.task}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
