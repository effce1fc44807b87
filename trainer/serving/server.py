"""One serving process: the catalog it serves, its reload loop, its batcher and its metrics.

The server is live as soon as it listens and ready once the first snapshot is loaded (in a
worker thread, so health checks answer meanwhile). Every ``poll_seconds`` it asks the
catalog source for a new snapshot and swaps it in whole: requests already accepted finish
on the snapshot they started with, new ones see the new tasks; a failed reload is logged and
counted, and the old snapshot stays served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from typing import Any, Protocol

import torch

from mutask.trainer.serving.batcher import Batcher
from mutask.trainer.serving.catalog import Catalog
from mutask.trainer.serving.metrics import ServingMetrics

log = logging.getLogger("mutask.serve")


class CatalogSource(Protocol):
    def refresh(self) -> Catalog | None:
        """A new snapshot when the served system changed, else None."""
        ...


@dataclass(frozen=True)
class ServeSettings:
    """How one server batches and reloads (the CLI's flags)."""

    max_batch: int = 64
    max_wait: float = 0.002
    poll_seconds: float = 10.0
    share_prefixes: bool = True
    max_body: int = 64 * 2**20
    autocast: torch.dtype | None = None


def _version() -> str:
    try:
        return package_version("mutask")
    except PackageNotFoundError:
        return "0"


class Server:
    """State shared by the routes: the current snapshot, the batcher, the metrics."""

    def __init__(
        self,
        source: CatalogSource,
        device: torch.device,
        settings: ServeSettings = ServeSettings(),
        metrics: ServingMetrics | None = None,
    ) -> None:
        self.source = source
        self.device = device
        self.settings = settings
        self.metrics = metrics or ServingMetrics()
        self.catalog: Catalog | None = None
        self.version = _version()
        self._batcher: Batcher | None = None

    @property
    def max_batch(self) -> int:
        return self.settings.max_batch

    @property
    def max_body(self) -> int:
        return self.settings.max_body

    @property
    def batcher(self) -> Batcher:
        if self._batcher is None:
            raise RuntimeError("the server is not started")
        return self._batcher

    def reload(self) -> bool:
        """Ask the source for a new snapshot and swap it in; True if it changed."""
        try:
            catalog = self.source.refresh()
        except Exception:
            self.metrics.reloads.labels("failed").inc()
            log.exception("reloading the served system failed; still serving the last one")
            return False
        if catalog is None:
            return False
        previous, self.catalog = self.catalog, catalog
        self.metrics.loaded(catalog, previous)
        old = {n: t.version for n, t in (previous.tasks.items() if previous else ())}
        changes = [
            f"{n} v{t.version}" + ("" if n not in old else f" (was v{old[n]})")
            for n, t in sorted(catalog.tasks.items())
            if old.get(n) != t.version or n not in old
        ]
        log.info(
            "serving %d task(s), %d components, %s parameters%s",
            len(catalog.tasks),
            catalog.components,
            f"{catalog.parameters:,}",
            f"; new: {', '.join(changes)}" if changes else "",
        )
        return True

    async def _reload_loop(self) -> None:
        while True:
            await asyncio.to_thread(self.reload)
            await asyncio.sleep(self.settings.poll_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        """Start the batcher and the reload loop with the app; stop them after it."""
        s = self.settings
        self._batcher = Batcher(
            self.device,
            autocast=s.autocast,
            max_rows=s.max_batch,
            max_wait=s.max_wait,
            share_prefixes=s.share_prefixes,
            observe=self.metrics.window,
        )
        self._batcher.start()
        reloader = asyncio.create_task(self._reload_loop(), name="mutask-reload")
        try:
            yield
        finally:
            reloader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reloader
            await self._batcher.stop()
