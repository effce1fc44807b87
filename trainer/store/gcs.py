"""The ``gs://bucket/prefix`` backend of the object-store interface (google-cloud-storage).

Credentials come from Application Default Credentials (Workload Identity in a cluster); when
``STORAGE_EMULATOR_HOST`` is set (fake-gcs-server in tests) the client is anonymous.
Compare-and-swap maps to ``if_generation_match`` (0 = create only). Transient failures
(408/429/5xx, connection errors, timeouts) are retried with bounded exponential backoff and
jitter; every error names the object as ``gs://bucket/key``.

CAS objects (manifests, leases, resume states) must stay small: uploads above 8 MiB become
resumable, and fake-gcs-server ignores preconditions on resumable uploads. A CAS write of a
larger object is refused rather than silently losing its precondition.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import TypeVar

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.cloud import storage

from mutask.trainer.store.objects import (
    Listing,
    NotFound,
    ObjectInfo,
    PreconditionFailed,
    StoreAccessError,
    StoreError,
)
from mutask.trainer.store.uri import StoreURIError, parse_store_uri

T = TypeVar("T")

RETRYABLE_CODES = frozenset({408, 429, 500, 502, 503, 504})
MAX_CAS_BYTES = 8 * 1024 * 1024  # the client switches to resumable uploads above this
TOUCH_METADATA_KEY = "mutask-touched"


def is_transient(err: BaseException) -> bool:
    """Worth retrying: throttling, server errors, dropped connections, timeouts."""
    if isinstance(err, gexc.GoogleAPICallError):
        return err.code in RETRYABLE_CODES
    return isinstance(
        err,
        requests.ConnectionError
        | requests.Timeout
        | ConnectionError
        | TimeoutError
        | auth_exc.TransportError,
    )


class GcsObjectStore:
    """Objects in one bucket under an optional prefix."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: storage.Client | None = None,
        attempts: int = 6,
        backoff: float = 0.25,
        max_backoff: float = 8.0,
        timeout: float = 60.0,
    ) -> None:
        if not bucket:
            raise StoreError("gs:// URI without a bucket name")
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"gs://{bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self.client = client if client is not None else default_client()
        self.bucket = self.client.bucket(bucket)
        self.attempts = attempts
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout
        self.sleep: Callable[[float], None] = time.sleep

    @classmethod
    def from_uri(cls, uri: str) -> GcsObjectStore:
        """``gs://bucket`` or ``gs://bucket/some/prefix`` (checked, see :mod:`.uri`)."""
        where = parse_store_uri(uri)
        if where.scheme != "gs":
            raise StoreURIError("store", uri, "not a gs:// URI")
        return cls(where.bucket, where.prefix)

    # -- helpers -------------------------------------------------------------------------
    def _name(self, key: str) -> str:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise StoreError(f"{self.uri}: invalid object key {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key

    def _where(self, key: str) -> str:
        return f"gs://{self.bucket_name}/{self._name(key)}"

    def _call(self, key: str, what: str, fn: Callable[[int], T]) -> T:
        """Run ``fn(attempt)`` with retries on transient errors; map errors to store errors."""
        delay = self.backoff
        for attempt in range(self.attempts):
            try:
                return fn(attempt)
            except gexc.NotFound as err:
                if what == "list":  # listing never 404s on a prefix: the bucket is missing
                    raise StoreAccessError(
                        f"gs://{self.bucket_name}: no such bucket (create it first)"
                    ) from err
                raise NotFound(f"{self._where(key)}: not found ({what})") from err
            except (gexc.Forbidden, gexc.Unauthorized) as err:
                raise StoreAccessError(
                    f"{self._where(key)}: {what} denied ({err.code}): check the credentials "
                    "(Workload Identity / ADC) and the bucket's IAM"
                ) from err
            except gexc.PreconditionFailed as err:
                raise PreconditionFailed(
                    f"{self._where(key)}: {what}: generation precondition failed"
                ) from err
            except (StoreError, KeyboardInterrupt):
                raise
            except Exception as err:
                if not is_transient(err) or attempt + 1 >= self.attempts:
                    tries = f" after {attempt + 1} attempts" if attempt else ""
                    raise StoreError(f"{self._where(key)}: {what} failed{tries}: {err}") from err
                self.sleep(min(self.max_backoff, delay) * (0.5 + random.random() / 2))
                delay *= 2
        raise AssertionError("unreachable")

    # -- the ObjectStore interface ---------------------------------------------------------
    def read(self, key: str) -> tuple[bytes, int]:
        def attempt(_: int) -> tuple[bytes, int]:
            blob = self.bucket.blob(self._name(key))
            data = blob.download_as_bytes(retry=None, timeout=self.timeout)
            if blob.generation is None:
                raise StoreError(f"{self._where(key)}: download returned no generation")
            return data, int(blob.generation)

        return self._call(key, "read", attempt)

    def write(self, key: str, data: bytes, *, if_generation: int | None = None) -> int:
        if if_generation is not None and len(data) > MAX_CAS_BYTES:
            raise StoreError(
                f"{self._where(key)}: compare-and-swap write of {len(data):,} bytes refused "
                f"(CAS objects must stay under {MAX_CAS_BYTES:,} bytes, non-resumable)"
            )

        def attempt(n: int) -> int:
            blob = self.bucket.blob(self._name(key))
            try:
                blob.upload_from_string(
                    data,
                    content_type="application/octet-stream",
                    if_generation_match=if_generation,
                    retry=None,
                    timeout=self.timeout,
                )
            except gexc.PreconditionFailed:
                if n > 0:  # an earlier attempt may have landed before its response was lost
                    won = self._landed(key, data)
                    if won is not None:
                        return won
                raise
            if blob.generation is None:
                raise StoreError(f"{self._where(key)}: upload returned no generation")
            return int(blob.generation)

        return self._call(key, "write", attempt)

    def _landed(self, key: str, data: bytes) -> int | None:
        """The generation of the object if it already holds exactly ``data``."""
        try:
            current, gen = self.read(key)
        except NotFound:
            return None
        return gen if current == data else None

    def stat(self, key: str) -> ObjectInfo | None:
        def attempt(_: int) -> ObjectInfo | None:
            blob = self.bucket.get_blob(self._name(key), retry=None, timeout=self.timeout)
            return None if blob is None else self._info(key, blob)

        return self._call(key, "stat", attempt)

    @staticmethod
    def _info(key: str, blob: storage.Blob) -> ObjectInfo:
        updated = blob.updated.timestamp() if blob.updated is not None else 0.0
        return ObjectInfo(key, int(blob.generation or 0), int(blob.size or 0), updated)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        base = f"{self.prefix}/" if self.prefix else ""

        def attempt(_: int) -> list[ObjectInfo]:
            blobs = self.client.list_blobs(
                self.bucket_name, prefix=base + prefix, retry=None, timeout=self.timeout
            )
            return [self._info(b.name[len(base) :], b) for b in blobs]

        return sorted(self._call(prefix or ".", "list", attempt), key=lambda o: o.key)

    def delete(self, key: str, *, if_generation: int | None = None) -> None:
        def attempt(n: int) -> None:
            try:
                self.bucket.blob(self._name(key)).delete(
                    if_generation_match=if_generation, retry=None, timeout=self.timeout
                )
            except gexc.NotFound:
                if n == 0:
                    raise  # a retried delete that finds nothing has succeeded

        self._call(key, "delete", attempt)

    def touch(self, key: str) -> int:
        """Refresh ``updated`` with a server-side rewrite onto itself (no data transfer)."""

        def attempt(_: int) -> int:
            src = self.bucket.get_blob(self._name(key), retry=None, timeout=self.timeout)
            if src is None:
                raise NotFound(f"{self._where(key)}: not found (touch)")
            dst = self.bucket.blob(self._name(key))
            # GCS refuses a rewrite onto itself that changes nothing: change one metadata key
            dst.metadata = {**(src.metadata or {}), TOUCH_METADATA_KEY: repr(time.time())}
            dst.content_type = src.content_type
            token, _, _ = dst.rewrite(
                src, if_generation_match=src.generation, retry=None, timeout=self.timeout
            )
            while token is not None:
                token, _, _ = dst.rewrite(src, token=token, retry=None, timeout=self.timeout)
            if dst.generation is None:
                raise StoreError(f"{self._where(key)}: rewrite returned no generation")
            return int(dst.generation)

        return self._call(key, "touch", attempt)

    def debris(self, prefix: str = "") -> Listing:
        """None: GCS uploads are atomic and need no lock files."""
        return []

    def remove_debris(self, key: str) -> bool:
        return False


def default_client() -> storage.Client:
    """Anonymous client for the emulator; otherwise Application Default Credentials."""
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(
            project=os.environ.get("GOOGLE_CLOUD_PROJECT", "mutask-emulator"),
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        )
    try:
        return storage.Client()
    except (auth_exc.DefaultCredentialsError, OSError) as err:
        raise StoreAccessError(f"gs://: no Google Cloud credentials (ADC): {err}") from err
