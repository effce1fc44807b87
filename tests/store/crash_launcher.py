"""`mutask` with a crash point: SIGKILL this process when a named step of a run is reached.

    python crash_launcher.py POINT introduce --store S --task T ...

Crash injection lives here, on the test side: the launcher wraps the named production
functions so that reaching the point kills the process with SIGKILL (no cleanup, no
``finally``, as a node loss would), then runs :func:`mutask.trainer.cli.main` with the rest
of the arguments. Without a point (``-``) it runs the CLI unchanged.

``POINTS`` names every step of a task iteration's write protocol where a kill leaves a
different state behind (see docs/storage.md, "Crash points"); tests/store/test_store_resume.py
kills a run at each of them and checks that the retry ends where an uninterrupted run does.
"""

from __future__ import annotations

import functools
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

BLOB_TEMP = "checkpoint-blob-temp"
POINTS: dict[str, str] = {
    BLOB_TEMP: "a checkpoint's first blob written to its temp file, not yet renamed",
    "after-checkpoint": "the first generation's resume state written",
    "before-manifest": "blobs stored and checked, lease confirmed, manifest not written",
    "after-manifest": "the manifest written, the no-forgetting check not started",
    "during-check": "inside the no-forgetting check of the other tasks",
    "after-check": "the check done, the resume state not yet cleared",
}


def die(_point: str) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _wrap(
    owner: Any,
    name: str,
    *,
    before: Callable[..., bool] | None = None,
    after: Callable[..., bool] | None = None,
) -> None:
    """Replace ``owner.name`` by a wrapper that dies when ``before(*args)`` holds before the
    call, or ``after(*args)`` after it."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if before is not None and before(*args, **kwargs):
            die(name)
        result = original(*args, **kwargs)
        if after is not None and after(*args, **kwargs):
            die(name)
        return result

    setattr(owner, name, wrapper)


def _manifest_write(_self: Any, key: str, *_args: Any, **_kw: Any) -> bool:
    return key.startswith("tasks/") and key.endswith("/manifest.json")


def arm(point: str) -> None:
    """Install the crash point ``point`` in this process."""
    from mutask.trainer.iteration import engine, resume
    from mutask.trainer.store import gcs, objects

    always = lambda *_a, **_k: True  # noqa: E731
    if point == BLOB_TEMP:
        real_replace = os.replace

        def replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
            if "/blobs/" in str(dst) and str(src).endswith(".tmp"):
                die(point)
            real_replace(src, dst, *args, **kwargs)

        objects.os.replace = replace  # type: ignore[assignment]  # the module's os is os
    elif point == "after-checkpoint":
        _wrap(resume.Resume, "save", after=always)
    elif point in ("before-manifest", "after-manifest"):
        for cls in (objects.LocalObjectStore, gcs.GcsObjectStore):
            if point == "before-manifest":
                _wrap(cls, "write", before=_manifest_write)
            else:
                _wrap(cls, "write", after=_manifest_write)
    elif point == "during-check":
        _wrap(engine, "verify_task", before=always)
    elif point == "after-check":
        _wrap(resume.Resume, "clear", before=always)
    else:
        raise SystemExit(f"crash_launcher: unknown point {point!r} (known: {sorted(POINTS)})")


def main(argv: list[str]) -> int:
    point, rest = argv[0], argv[1:]
    if point != "-":
        arm(point)
    from mutask.trainer.cli import main as mutask

    return mutask(rest)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
