"""The object-store interface every backend implements, and the local-folder backend.

Semantics follow GCS: each object has a generation that changes on every write; a write
may carry ``if_generation`` (0 = create only, N = replace only generation N) and fails with
:class:`PreconditionFailed` otherwise. The local backend writes to a temp file and renames
it (atomic on POSIX), and serialises compare-and-swap with an ``flock`` per object.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class StoreError(RuntimeError):
    """A storage operation failed; the message names the object."""


class NotFound(StoreError):
    """The object does not exist."""


class PreconditionFailed(StoreError):
    """A compare-and-swap write lost: the object's generation was not the expected one."""


@dataclass(frozen=True)
class ObjectInfo:
    """Metadata of one stored object."""

    key: str
    generation: int
    size: int
    updated: float


class ObjectStore(Protocol):
    """Keys are '/'-separated relative names under the store's root URI."""

    uri: str

    def read(self, key: str) -> tuple[bytes, int]:
        """The object's bytes and generation; NotFound if absent."""
        ...

    def write(self, key: str, data: bytes, *, if_generation: int | None = None) -> int:
        """Write atomically; return the new generation."""
        ...

    def stat(self, key: str) -> ObjectInfo | None: ...

    def list(self, prefix: str = "") -> list[ObjectInfo]: ...

    def delete(self, key: str, *, if_generation: int | None = None) -> None:
        """Delete; with ``if_generation``, only if the object is still that generation."""
        ...

    def touch(self, key: str) -> int:
        """Refresh the object's ``updated`` time (a new generation); NotFound if absent."""
        ...


class LocalObjectStore:
    """Objects as files under a folder; atomic temp+rename writes and flock'd CAS."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = self.root.as_uri()

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise StoreError(f"invalid object key {key!r}")
        return self.root / key

    @staticmethod
    def _generation(path: Path) -> int:
        return path.stat().st_mtime_ns

    def read(self, key: str) -> tuple[bytes, int]:
        path = self._path(key)
        try:
            with path.open("rb") as f:
                gen = os.fstat(f.fileno()).st_mtime_ns
                return f.read(), gen
        except FileNotFoundError:
            raise NotFound(f"{self.uri}/{key}: not found") from None
        except OSError as err:
            raise StoreError(f"{self.uri}/{key}: read failed: {err}") from err

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = path.parent / f".{path.name}.lock"
        with lock.open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def write(self, key: str, data: bytes, *, if_generation: int | None = None) -> int:
        path = self._path(key)
        try:
            with self._locked(path):
                if if_generation is not None:
                    current = self._generation(path) if path.exists() else 0
                    if current != if_generation:
                        raise PreconditionFailed(
                            f"{self.uri}/{key}: generation is {current}, expected {if_generation}"
                        )
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
                try:
                    with os.fdopen(fd, "wb") as f:
                        f.write(data)
                        f.flush()
                        os.fsync(f.fileno())
                    os.replace(tmp, path)
                except BaseException:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)
                    raise
                gen = self._generation(path)
                if if_generation is not None and gen == if_generation:
                    # same-nanosecond rewrite: bump so every write has a new generation
                    os.utime(path, ns=(gen + 1, gen + 1))
                    gen += 1
                return gen
        except (PreconditionFailed, StoreError):
            raise
        except OSError as err:
            raise StoreError(f"{self.uri}/{key}: write failed: {err}") from err

    def stat(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        try:
            st = path.stat()
        except FileNotFoundError:
            return None
        return ObjectInfo(key, st.st_mtime_ns, st.st_size, st.st_mtime)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        if not self.root.exists():
            return []
        out: list[ObjectInfo] = []
        for dirpath, _, files in os.walk(self.root):
            for name in files:
                if name.startswith("."):
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    st = full.stat()
                    out.append(ObjectInfo(key, st.st_mtime_ns, st.st_size, st.st_mtime))
        return sorted(out, key=lambda o: o.key)

    def delete(self, key: str, *, if_generation: int | None = None) -> None:
        path = self._path(key)
        try:
            if if_generation is None:
                path.unlink()
                return
            with self._locked(path):
                current = self._generation(path)
                if current != if_generation:
                    raise PreconditionFailed(
                        f"{self.uri}/{key}: generation is {current}, expected {if_generation}"
                    )
                path.unlink()
        except FileNotFoundError:
            raise NotFound(f"{self.uri}/{key}: not found") from None

    def touch(self, key: str) -> int:
        path = self._path(key)
        try:
            with self._locked(path):
                before = self._generation(path)
                os.utime(path)
                gen = self._generation(path)
                if gen <= before:  # coarse clock: still give the object a new generation
                    gen = before + 1
                    os.utime(path, ns=(gen, gen))
                return gen
        except FileNotFoundError:
            raise NotFound(f"{self.uri}/{key}: not found") from None


def open_object_store(uri: str) -> ObjectStore:
    """Choose the backend from the URI: ``gs://bucket/prefix``, ``file://`` or a plain path."""
    if uri.startswith("gs://"):
        from mutask.trainer.store.gcs import GcsObjectStore  # optional backend

        return GcsObjectStore.from_uri(uri)
    if uri.startswith("file://"):
        return LocalObjectStore(uri[len("file://") :])
    if "://" in uri:
        raise StoreError(f"store={uri!r}: unsupported scheme (use a path, file:// or gs://)")
    return LocalObjectStore(uri)
