"""Where a system's objects live under the store root (the keys; see docs/storage.md).

::

    blobs/<sha256>.safetensors     one component (params + momentum), immutable
    tasks/<task>/manifest.json     the task's published path
    tasks/<task>/resume.json       the in-flight iteration's checkpoint
    tasks/<task>/lease.json        who may write the task now
    tasks/<task>/exchange/...      candidate records of workers sharing a generation
"""

from __future__ import annotations

from urllib.parse import quote, unquote

BLOBS = "blobs/"
TASKS = "tasks/"
BLOB_SUFFIX = ".safetensors"
MANIFEST = "manifest.json"
RESUME = "resume.json"
LEASE = "lease.json"
EXCHANGE = "exchange/"  # under a task's prefix


def task_prefix(task: str) -> str:
    return f"{TASKS}{quote(task, safe='')}/"


def task_key(task: str, name: str) -> str:
    """``tasks/<task>/<name>``."""
    return task_prefix(task) + name


def blob_key(digest: str) -> str:
    return f"{BLOBS}{digest}{BLOB_SUFFIX}"


def task_of(key: str, name: str) -> str | None:
    """The task whose ``tasks/<task>/<name>`` object ``key`` is, else None."""
    parts = key.split("/")
    if len(parts) == 3 and parts[0] + "/" == TASKS and parts[2] == name:
        return unquote(parts[1])
    return None
