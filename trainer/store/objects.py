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
from typing import ClassVar, Protocol

from mutask.contract import ExitCode
from mutask.trainer.errors import MutaskError
from mutask.trainer.store.uri import parse_store_uri


class StoreError(MutaskError, RuntimeError):
    """A storage operation failed; the message names the object (URI and key). Exit 1: an
    I/O failure that a retry may fix."""


class NotFound(StoreError):
    """The object does not exist."""


class PreconditionFailed(StoreError):
    """A compare-and-swap write lost: the object's generation was not the expected one."""


class StoreAccessError(StoreError):
    """The store cannot be used at all: no credentials, permission denied, no such bucket,
    a folder that cannot be created. Exit 2: a retry cannot fix it."""

    exit_code: ClassVar[int] = ExitCode.BAD_INPUT


class EmptyStore(StoreError):
    """The store has no root model yet (bootstrap one first). Exit 2."""

    exit_code: ClassVar[int] = ExitCode.BAD_INPUT


class StoreDamaged(StoreError):
    """The store's content is damaged (unreadable manifest, missing or corrupt blob, a
    manifest that contradicts another); names the object. Exit 2: a retry cannot fix it."""

    exit_code: ClassVar[int] = ExitCode.BAD_INPUT


@dataclass(frozen=True)
class ObjectInfo:
    """Metadata of one stored object."""

    key: str
    generation: int
    size: int
    updated: float


Listing = list[ObjectInfo]  # (a type alias: inside the store classes `list` is a method)


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

    def debris(self, prefix: str = "") -> Listing:
        """Leftovers of interrupted writes under ``prefix`` (temp and idle lock files; GCS
        writes are atomic and leave none)."""
        ...

    def remove_debris(self, key: str) -> bool:
        """Remove one leftover (unless a live writer holds it); whether it was removed."""
        ...


DEBRIS_SUFFIXES = (".tmp", ".lock")


class LocalObjectStore:
    """Objects as files under a folder; atomic temp+rename writes and flock'd CAS."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser().resolve()
        self.uri = self.root.as_uri()

    def _path(self, key: str) -> Path:
        if not key or key.startswith("/") or ".." in key.split("/"):
            raise StoreError(f"{self.uri}: invalid object key {key!r}")
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
            raise _os_error(self.uri, key, "read", err) from err

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        """Exclusive per-object lock (``.<name>.lock``, removed again on release, so lock
        files do not pile up). A waiter that wakes on a lock file its holder already
        removed retries on the current one, so two holders never overlap."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with _flock(path.parent / f".{path.name}.lock", blocking=True) as held:
            assert held
            yield

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
            raise _os_error(self.uri, key, "write", err) from err

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
                    try:
                        st = full.stat()
                    except FileNotFoundError:  # deleted while we listed
                        continue
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

    def debris(self, prefix: str = "") -> Listing:
        if not self.root.exists():
            return []
        out: Listing = []
        for dirpath, _, files in os.walk(self.root):
            for name in files:
                if not (name.startswith(".") and name.endswith(DEBRIS_SUFFIXES)):
                    continue
                full = Path(dirpath) / name
                key = full.relative_to(self.root).as_posix()
                if not key.startswith(prefix):
                    continue
                try:
                    st = full.stat()
                except FileNotFoundError:
                    continue
                out.append(ObjectInfo(key, st.st_mtime_ns, st.st_size, st.st_mtime))
        return sorted(out, key=lambda o: o.key)

    def remove_debris(self, key: str) -> bool:
        path = self._path(key)
        if not (path.name.startswith(".") and path.name.endswith(DEBRIS_SUFFIXES)):
            raise StoreError(f"{self.uri}/{key}: not a temp or lock file")
        if path.name.endswith(".lock"):
            with _flock(path, blocking=False, create=False) as held:
                return held  # held: removed by _flock on release
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True


def _os_error(uri: str, key: str, what: str, err: OSError) -> StoreError:
    """A local I/O failure as a store error naming the object; access problems (permission,
    a file where a folder should be) cannot be fixed by a retry."""
    access = isinstance(err, PermissionError | NotADirectoryError | IsADirectoryError)
    kind = StoreAccessError if access else StoreError
    return kind(f"{uri}/{key}: {what} failed: {err.strerror or err}")


@contextlib.contextmanager
def _flock(lock: Path, *, blocking: bool, create: bool = True) -> Iterator[bool]:
    """Hold an exclusive flock on the file ``lock`` and unlink it on release. Yields False
    (holding nothing) when not ``blocking`` and someone else holds it, or when not ``create``
    and it is gone."""
    while True:
        try:
            fh = lock.open("a") if create else lock.open("r")
        except FileNotFoundError:
            if create:
                raise StoreError(f"{lock.parent}: the folder vanished") from None
            yield False
            return
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            fh.close()
            yield False
            return
        try:
            same = os.stat(lock).st_ino == os.fstat(fh.fileno()).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        fh.close()  # its holder removed it before we got it: lock the current one
        if not create:
            yield False
            return
    try:
        yield True
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)  # while still holding it: later waiters see a new inode
        fh.close()


def open_object_store(uri: str) -> ObjectStore:
    """Check ``uri`` (:func:`~mutask.trainer.store.uri.parse_store_uri`), then open its
    backend: ``gs://bucket/prefix``, or a local folder (``file:///path`` or a plain path)."""
    where = parse_store_uri(uri)
    if where.scheme == "gs":
        from mutask.trainer.store.gcs import GcsObjectStore  # optional backend

        return GcsObjectStore(where.bucket, where.prefix)
    return LocalObjectStore(where.path)
