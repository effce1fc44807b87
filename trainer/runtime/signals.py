"""Graceful preemption: SIGTERM sets a flag the engine polls; it then exits with code 75."""

from __future__ import annotations

import signal
import threading
from types import FrameType


class StopFlag:
    """A flag set by SIGTERM/SIGINT (or by hand) and polled between training steps."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal: int | None = None

    def set(self, signum: int | None = None) -> None:
        self.signal = signum
        self._event.set()

    def __call__(self) -> bool:
        return self._event.is_set()

    def install(self, signals: tuple[int, ...] = (signal.SIGTERM,)) -> None:
        """Install handlers (main thread only); a second signal is not swallowed twice."""

        def handler(signum: int, frame: FrameType | None) -> None:
            self.set(signum)

        for sig in signals:
            signal.signal(sig, handler)
