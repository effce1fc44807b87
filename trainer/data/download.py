"""Fetch remote files into a local cache: URLs with sha256 verification, and ``gs://`` objects.

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


def split_gs_uri(uri: str, *, task: str = "?", field: str = "dataset.source") -> tuple[str, str]:
    """``gs://bucket/path/obj.npz`` -> ``("bucket", "path/obj.npz")``."""
    parsed = urllib.parse.urlparse(uri)
    name = parsed.path.lstrip("/")
    if parsed.scheme != "gs" or not parsed.netloc or not name:
        raise DatasetError(task, field, uri, "expected gs://BUCKET/OBJECT")
    return parsed.netloc, name


def fetch_gcs(uri: str, cache_dir: Path, *, task: str = "?", field: str = "dataset.source") -> Path:
    """Download a ``gs://`` object into ``cache_dir`` (keyed by its generation); reuse hits.

    Honours ``STORAGE_EMULATOR_HOST`` (anonymous credentials against an emulator).
    """
    bucket_name, blob_name = split_gs_uri(uri, task=task, field=field)
    try:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage
    except ImportError as err:
        raise DatasetError(
            task,
            field,
            uri,
            "reading gs:// needs google-cloud-storage (pip install mutask[trainer])",
        ) from err
    try:
        if os.environ.get("STORAGE_EMULATOR_HOST"):
            client = storage.Client(project="mutask-emulator", credentials=AnonymousCredentials())  # type: ignore[no-untyped-call]
        else:
            client = storage.Client()
        blob = client.bucket(bucket_name).get_blob(blob_name)
        if blob is None:
            raise DatasetError(task, field, uri, "no such object")
        dest = cache_dir / "gcs" / bucket_name / str(blob.generation) / blob_name
        if dest.is_file() and dest.stat().st_size == blob.size:
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            blob.download_to_filename(str(tmp), if_generation_match=blob.generation)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        return dest
    except DatasetError:
        raise
    except Exception as err:  # google.api_core / auth / transport errors have no common base
        raise DatasetError(task, field, uri, f"cannot download: {err}") from err
