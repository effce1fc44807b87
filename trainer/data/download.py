"""Fetch files from URLs into a local cache with sha256 verification (built-in datasets).

Downloads land in a temporary file next to the destination and are renamed into place
only after they verified, so a cache never holds a partial or corrupted file.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from mutask.trainer.data.errors import DatasetError

_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """``$MUTASK_CACHE_DIR``, else ``~/.cache/mutask/datasets``."""
    env = os.environ.get("MUTASK_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "mutask" / "datasets"


def sha256_of(path: Path) -> str:
    """The hex sha256 digest of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_verified(
    url: str,
    dest: Path,
    sha256: str,
    *,
    task: str = "?",
    field: str = "dataset.source",
    timeout: float = 60.0,
) -> Path:
    """Download ``url`` (http, https or file) to ``dest`` unless a verified copy is there.

    The download must match ``sha256``; a mismatch deletes it and raises ``DatasetError``.
    An existing ``dest`` with a wrong digest is replaced.
    """
    if dest.is_file() and sha256_of(dest) == sha256:
        return dest
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in ("http", "https", "file"):
        raise DatasetError(task, field, url, f"unsupported URL scheme {scheme!r}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            for block in iter(lambda: resp.read(_CHUNK), b""):
                digest.update(block)
                out.write(block)
        if digest.hexdigest() != sha256:
            raise DatasetError(
                task,
                field,
                url,
                f"checksum mismatch: sha256 {digest.hexdigest()} != expected {sha256}",
            )
        os.replace(tmp, dest)
    except (OSError, urllib.error.URLError) as err:
        raise DatasetError(task, field, url, f"download failed: {err}") from err
    finally:
        tmp.unlink(missing_ok=True)
    return dest
