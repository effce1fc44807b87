"""The one filesystem layer every dataset read goes through: local paths, ``file://`` and
``gs://``, on fsspec (gcsfs for GCS), with retried reads.

A :class:`Location` is a parsed dataset URI. Its filesystem is looked up per call (fsspec
caches one instance per process), never stored, so a location handed to a forked loader
worker opens its own connection there. GCS uses gcsfs's stable JSON-API client
(``gcsfs.core.GCSFileSystem``) with Application Default Credentials, or anonymously against
an emulator when ``STORAGE_EMULATOR_HOST`` is set (fake-gcs-server in tests).

Reads (:func:`read_ranges`) are batched: a batch's byte ranges go out in one call, which
gcsfs fetches concurrently. A failed read is retried ``MUTASK_DATA_READ_RETRIES`` times
(default 3) with doubling pauses starting at ``MUTASK_DATA_READ_BACKOFF`` seconds (default
0.5): an object that disappears for good (a deleted shard) then raises ``DatasetError``
naming it.
"""

from __future__ import annotations

import os
import time
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fsspec

from mutask.trainer.data.errors import DatasetError

FIELD = "dataset.source"
_LOCAL = "file"


def filesystem(protocol: str) -> Any:
    """This process's fsspec filesystem for ``protocol`` (``file`` or ``gs``)."""
    if protocol == _LOCAL:
        return fsspec.filesystem("file")
    if protocol == "gs":
        try:
            from gcsfs.core import GCSFileSystem
        except ImportError as err:  # pragma: no cover - gcsfs is a trainer dependency
            raise DatasetError(
                "?", FIELD, "gs://", "reading gs:// needs gcsfs (pip install mutask[trainer])"
            ) from err
        token = "anon" if os.environ.get("STORAGE_EMULATOR_HOST") else None
        # no listings cache: a million-object listing would otherwise stay in memory
        return GCSFileSystem(token=token, use_listings_cache=False)
    raise ValueError(f"unsupported protocol {protocol!r}")


@dataclass(frozen=True)
class Location:
    """A dataset location: ``protocol`` (``file`` or ``gs``) and the fsspec ``path``."""

    protocol: str
    path: str

    @property
    def fs(self) -> Any:
        return filesystem(self.protocol)

    @property
    def uri(self) -> str:
        """How users spell it: a local path, or ``gs://bucket/key``."""
        return self.path if self.protocol == _LOCAL else f"gs://{self.path}"

    @property
    def name(self) -> str:
        """The last path component (``.../cifar10/`` -> ``cifar10``)."""
        return self.path.rstrip("/").rsplit("/", 1)[-1]

    def child(self, relative: str) -> Location:
        return Location(self.protocol, f"{self.path.rstrip('/')}/{relative.lstrip('/')}")

    def at(self, path: str) -> Location:
        """The location of another path of the same filesystem."""
        return Location(self.protocol, path)

    def local(self) -> Path | None:
        """The local path, or None for remote locations."""
        return Path(self.path) if self.protocol == _LOCAL else None


def locate(uri: str, *, task: str = "?", field: str = FIELD) -> Location:
    """Parse a local path, ``file://`` or ``gs://`` URI (other schemes raise ``DatasetError``)."""
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme == "gs":
        key = parsed.path.strip("/")
        if not parsed.netloc:
            raise DatasetError(task, field, uri, "expected gs://BUCKET/PATH")
        return Location("gs", f"{parsed.netloc}/{key}" if key else parsed.netloc)
    if parsed.scheme == "file":
        return Location(_LOCAL, str(Path(urllib.request.url2pathname(parsed.path))))
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # a path (or a Windows drive letter)
        return Location(_LOCAL, str(Path(uri).expanduser().absolute()))
    raise DatasetError(
        task, field, uri, f"unsupported URI scheme {parsed.scheme!r}: use a path, file:// or gs://"
    )


def version_token(loc: Location) -> str:
    """Changes whenever the object changes: the GCS generation, or local size and mtime."""
    info = loc.fs.info(loc.path)
    if loc.protocol == "gs":
        return f"{info.get('generation')}-{info.get('size')}"
    return f"{info.get('size')}-{info.get('mtime')}"


def retry_policy() -> tuple[int, float]:
    """(retries, first pause in seconds) from the environment (see module doc)."""
    retries = int(os.environ.get("MUTASK_DATA_READ_RETRIES", "3"))
    backoff = float(os.environ.get("MUTASK_DATA_READ_BACKOFF", "0.5"))
    return max(0, retries), max(0.0, backoff)


def read_ranges(
    loc: Location,
    paths: Sequence[str],
    starts: Sequence[int] | None = None,
    ends: Sequence[int] | None = None,
    *,
    task: str = "?",
    source: str = "",
    what: str = "file",
) -> list[bytes]:
    """The bytes of each path (or of ``[start, end)`` of each), in order; retried reads.

    A read that still fails after the retries raises ``DatasetError`` naming the path as
    ``what`` (e.g. ``shard``), with the source URI ``source`` as the value.
    """
    fs = loc.fs
    out: list[bytes | None] = [None] * len(paths)
    todo = list(range(len(paths)))
    retries, pause = retry_policy()
    last: dict[int, BaseException] = {}
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(pause * 2 ** (attempt - 1))
        got = _fetch(fs, [paths[i] for i in todo], starts, ends, todo)
        failed: list[int] = []
        for i, value in zip(todo, got, strict=True):
            if isinstance(value, BaseException):
                last[i] = value
                failed.append(i)
            else:
                out[i] = value
        todo = failed
        if not todo:
            return [b for b in out if b is not None]
    first = todo[0]
    shown = loc.at(paths[first]).uri
    raise DatasetError(
        task,
        FIELD,
        source or loc.uri,
        f"cannot read {what} {shown} after {retries + 1} tries: "
        f"{type(last[first]).__name__}: {last[first]}",
    )


def download(loc: Location, dest: Path, *, task: str = "?", source: str = "") -> Path:
    """Copy one remote file to ``dest`` (streamed, retried, renamed into place when whole)."""
    retries, pause = retry_policy()
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    error: BaseException | None = None
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(pause * 2 ** (attempt - 1))
        try:
            loc.fs.get_file(loc.path, str(partial))
            os.replace(partial, dest)
            return dest
        except Exception as err:
            error = err
        finally:
            partial.unlink(missing_ok=True)
    raise DatasetError(
        task,
        FIELD,
        source or loc.uri,
        f"cannot download {loc.uri} after {retries + 1} tries: {type(error).__name__}: {error}",
    )


def _fetch(
    fs: Any,
    paths: list[str],
    starts: Sequence[int] | None,
    ends: Sequence[int] | None,
    which: list[int],
) -> list[bytes | BaseException]:
    """One attempt at every read (concurrent on GCS); each result is the bytes or the error."""
    first = None if starts is None else [int(starts[i]) for i in which]
    last = None if ends is None else [int(ends[i]) for i in which]
    try:
        results: list[bytes | BaseException] = fs.cat_ranges(paths, first, last, on_error="return")
    except Exception as err:
        return [err for _ in paths]
    return results
