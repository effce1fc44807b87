"""Storage reachability probes for a MultitaskSystem's store (``file://`` and ``gs://``).

``probe(uri)`` answers (reachable, empty, message). The GCS client is created lazily and can be
replaced (tests inject a fake; the emulator works through STORAGE_EMULATOR_HOST).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from urllib.parse import urlparse

from mutask.operator.system_plan import ProbeResult

GcsProbe = Callable[[str, str], ProbeResult]


def probe_file(path: str) -> ProbeResult:
    if not os.path.isdir(path):
        return ProbeResult(False, True, f"{path} is not a directory the operator can see")
    try:
        empty = not any(os.scandir(path))
    except OSError as err:
        return ProbeResult(False, True, f"cannot list {path}: {err}")
    return ProbeResult(True, empty, f"{path} is {'empty' if empty else 'in use'}")


def probe_gcs(bucket_name: str, prefix: str) -> ProbeResult:
    """Bucket exists (and is readable); empty = no object under the prefix."""
    try:
        from google.cloud import storage  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return ProbeResult(False, True, "google-cloud-storage is not installed in the operator")
    try:
        gcs = storage.Client()
        bucket = gcs.bucket(bucket_name)
        if not bucket.exists():
            return ProbeResult(False, True, f"bucket gs://{bucket_name} does not exist")
        blobs = list(gcs.list_blobs(bucket_name, prefix=prefix, max_results=1))
    except Exception as err:
        return ProbeResult(False, True, f"gs://{bucket_name}: {type(err).__name__}: {err}")
    empty = not blobs
    return ProbeResult(
        True, empty, f"gs://{bucket_name}/{prefix} is {'empty' if empty else 'in use'}"
    )


class StorageProber:
    """Dispatches on the URI scheme; ``gcs`` is injectable for tests."""

    def __init__(self, gcs: GcsProbe | None = None) -> None:
        self.gcs = gcs or probe_gcs

    def __call__(self, uri: str) -> ProbeResult:
        parsed = urlparse(uri)
        if parsed.scheme == "file":
            return probe_file(parsed.path)
        if parsed.scheme == "gs":
            prefix = parsed.path.lstrip("/")
            return self.gcs(parsed.netloc, prefix.rstrip("/") + "/" if prefix else "")
        return ProbeResult(False, True, f"unsupported storage scheme in {uri!r}")
