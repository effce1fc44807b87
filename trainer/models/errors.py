"""The one error type of checkpoint I/O."""

from __future__ import annotations

import os

from mutask.trainer.errors import BadInput


class CheckpointError(BadInput):
    """A checkpoint file is unreadable or does not fit; names the file, the key and why."""

    def __init__(self, path: str | os.PathLike[str], key: str | None, detail: str) -> None:
        where = os.fspath(path) if key is None else f"{os.fspath(path)}: key {key!r}"
        super().__init__(f"{where}: {detail}")
        self.path = os.fspath(path)
        self.key = key
