"""Crash points for the kill -9 tests: die abruptly at a named step when asked to.

``MUTASK_CRASH_AT=<name>`` makes :func:`crash_point` send SIGKILL to this process when the
named point is reached (no cleanup, no ``finally``), as a node loss would. Unset, it costs
one environment lookup.
"""

from __future__ import annotations

import os
import signal

CRASH_ENV = "MUTASK_CRASH_AT"


def crash_point(name: str) -> None:
    """SIGKILL this process if ``$MUTASK_CRASH_AT`` equals ``name``."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)
