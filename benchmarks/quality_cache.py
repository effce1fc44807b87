"""Finished runs of the quality protocol, kept as one JSON file each outside the repository.

Layout under the cache folder (default ``~/.cache/mutask/quality``)::

    <root key>/lr<lr>.json (pilots), root-e<cap>-p<patience>.{json,pt,safetensors}
    <protocol key>/baselines/<method>/<task>/seed<k>/lr<lr>.json (+ .pt for sequential)
    <protocol key>/mutask/<variant key>/seed<k>/<task>.json, summary.json, store/

A killed protocol resumes where it stopped; deleting a folder re-runs just that part.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "mutask/quality"


class Cache:
    """JSON records and tensor files under one protocol's folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def path(self, *parts: str) -> Path:
        return self.folder.joinpath(*parts)

    def load(self, *parts: str) -> dict[str, Any] | None:
        p = self.path(*parts)
        if not p.exists():
            return None
        data: dict[str, Any] = json.loads(p.read_text())
        return data

    def save(self, record: dict[str, Any], *parts: str) -> dict[str, Any]:
        """Write atomically (a crash never leaves half a record)."""
        p = self.path(*parts)
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=p.parent)
        with os.fdopen(fd, "w") as f:
            json.dump(record, f, indent=1, sort_keys=True)
        os.replace(tmp, p)
        return record


def lr_name(lr: float) -> str:
    return f"lr{lr:g}.json"
