"""The store URI grammar, checked before anything touches a store.

A store is a local folder (a plain path, or ``file:///absolute/path``) or a GCS bucket with
an optional prefix (``gs://bucket`` or ``gs://bucket/prefix``). Refused, naming the field
and the value: an empty string (it would mean the current directory), any other scheme
(``s3://``, ``http://``, ...), ``file://`` URIs that are relative, name a host or the
filesystem root, a path that resolves to the filesystem root or is an existing file, a
``gs://`` URI without a valid bucket name, and ``..`` segments in a URI. Pure: no I/O beyond
resolving a local path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from mutask.trainer.errors import FieldError

# GCS bucket names: 3-63 of [a-z0-9._-], starting and ending alphanumeric (dotted names up
# to 222 characters are allowed by GCS, each dot-separated part at most 63).
BUCKET = re.compile(r"^[a-z0-9](?:[a-z0-9._-]{1,220})[a-z0-9]$")
EXAMPLES = "a folder, file:///absolute/path or gs://bucket/prefix"


class StoreURIError(FieldError):
    """A store URI that is not a usable store (exit 2)."""


@dataclass(frozen=True)
class StoreURI:
    """A checked store location: ``scheme`` is ``file`` (``path``: absolute folder) or ``gs``
    (``bucket`` and ``prefix``, without surrounding slashes)."""

    scheme: str
    path: str = ""
    bucket: str = ""
    prefix: str = ""

    @property
    def uri(self) -> str:
        if self.scheme == "gs":
            return f"gs://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")
        return Path(self.path).as_uri()


def parse_store_uri(uri: object, field: str = "store") -> StoreURI:
    """Check ``uri`` (see the module doc); StoreURIError naming ``field`` and the value."""
    if not isinstance(uri, str) or not uri.strip():
        raise StoreURIError(field, uri, f"a store is {EXAMPLES} (an empty value is refused)")
    if uri != uri.strip() or any(ord(ch) < 32 for ch in uri):
        raise StoreURIError(field, uri, "surrounding spaces or control characters")
    if uri.startswith("gs://"):
        return _gs(uri, field)
    if uri.startswith("file:"):
        return _file(uri, field)
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", uri):
        scheme = uri.split("://", 1)[0]
        raise StoreURIError(field, uri, f"unsupported scheme {scheme!r}: a store is {EXAMPLES}")
    return _folder(Path(uri).expanduser(), uri, field, relative_ok=True)


def _gs(uri: str, field: str) -> StoreURI:
    parts = urlsplit(uri)
    bucket = parts.netloc
    if not bucket:
        raise StoreURIError(field, uri, "gs:// needs a bucket name: gs://bucket/prefix")
    if not BUCKET.match(bucket) or ".." in bucket or any(len(p) > 63 for p in bucket.split(".")):
        raise StoreURIError(
            field, uri, f"{bucket!r} is not a GCS bucket name (3-63 of [a-z0-9._-])"
        )
    if parts.query or parts.fragment:
        raise StoreURIError(field, uri, "a store URI has no ?query or #fragment")
    prefix = parts.path.strip("/")
    if prefix and any(seg in ("", ".", "..") for seg in prefix.split("/")):
        raise StoreURIError(field, uri, "the prefix has an empty, '.' or '..' segment")
    return StoreURI("gs", bucket=bucket, prefix=prefix)


def _file(uri: str, field: str) -> StoreURI:
    if not uri.startswith("file://"):
        raise StoreURIError(field, uri, "write file:///absolute/path (three slashes)")
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise StoreURIError(
            field, uri, f"file:// names host {parts.netloc!r}; write file:///absolute/path"
        )
    if parts.query or parts.fragment:
        raise StoreURIError(field, uri, "a store URI has no ?query or #fragment")
    path = unquote(parts.path)
    if not path.startswith("/"):
        raise StoreURIError(field, uri, "write file:///absolute/path")
    return _folder(Path(path), uri, field)


def _folder(path: Path, uri: str, field: str, *, relative_ok: bool = False) -> StoreURI:
    if not relative_ok and ".." in path.parts:
        raise StoreURIError(field, uri, "'..' segments are refused; name the folder directly")
    resolved = path.resolve()
    if resolved == Path(resolved.anchor):
        raise StoreURIError(field, uri, "the filesystem root is never a store; name a folder")
    if resolved.exists() and not resolved.is_dir():
        raise StoreURIError(field, uri, f"{resolved} exists and is not a folder")
    return StoreURI("file", path=str(resolved))
