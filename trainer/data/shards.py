"""WebDataset tar shards as a source, read by random access.

Accepted forms (local, ``file://`` or ``gs://``): a brace pattern
(``gs://bucket/cifar/train-{000000..000031}.tar``, expanded by ``braceexpand`` as WebDataset
does), a glob (``.../*.tar``), one ``.tar`` file, or a folder holding ``.tar`` files. Each
shard's base split is the first split name among the dash/underscore/dot-separated words of
its file name (``cifar-test-0003.tar`` -> ``test``; ``val``/``valid`` -> ``validation``),
else ``train``.

Samples follow WebDataset's conventions: consecutive members sharing a key (the name up to
the first dot of its last component, ``webdataset.tariterators.base_plus_ext``) form a
sample; its image is the first member with an image extension (jpg, jpeg, png, webp, ...);
its label an integer in a ``.cls`` (or ``.cls2``, ``.label``, ``.target``, ``.index``)
member, or the ``label``/``cls`` field of a ``.json`` member.

The first use of a shard scans its tar headers once (one sequential read) into an index
of (offset, size, label) per sample, cached as ``.npz`` under ``$MUTASK_CACHE_DIR/shard-index``
keyed by the shard's URI and version (GCS generation, or local size and mtime). Reading a
batch is then one byte-range read per image, issued together (concurrent on GCS), so a
global shuffle, TFDS slices and resuming mid-epoch cost no more than sequential reading.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mutask.trainer.data.arrays import Source
from mutask.trainer.data.decode import decode_with_mode
from mutask.trainer.data.download import default_cache_dir
from mutask.trainer.data.errors import DatasetError
from mutask.trainer.data.filesystem import FIELD, Location, read_ranges, version_token
from mutask.trainer.data.records import SPLIT_ALIASES, Records, canonical_split
from mutask.trainer.limits import MAX_CLASSES

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "ppm", "pgm", "tif", "tiff", "gif", "img")
LABEL_EXTS = ("cls", "cls2", "label", "target", "index")
_INDEX_VERSION = 1


@dataclass(frozen=True, eq=False)
class ShardRecords:
    """One base split of a shard set: per sample its shard, byte range, member and label."""

    loc: Location
    shards: tuple[str, ...]
    shard: np.ndarray  # int32 [N]
    offset: np.ndarray  # int64 [N]
    size: np.ndarray  # int64 [N]
    member: np.ndarray  # bytes [N]: the image member's name
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def where(self, row: int) -> str:
        shard = self.loc.at(self.shards[int(self.shard[row])]).uri
        return f"{shard}:{self.member[row].decode()}"

    def fetch(self, rows: np.ndarray, *, task: str = "?") -> list[tuple[np.ndarray, str]]:
        paths = [self.shards[int(self.shard[r])] for r in rows]
        starts = [int(self.offset[r]) for r in rows]
        ends = [int(self.offset[r] + self.size[r]) for r in rows]
        data = read_ranges(
            self.loc, paths, starts, ends, task=task, source=self.source, what="shard"
        )
        return [
            decode_with_mode(raw, self.where(int(r)), task=task, source=self.source)
            for raw, r in zip(data, rows, strict=True)
        ]


def is_shard_uri(uri: str) -> bool:
    """Whether a source string names shards by pattern or file (``{..}``, ``*.tar``, ``.tar``)."""
    return "{" in uri or uri.rstrip("/").lower().endswith(".tar")


def shard_split(path: str) -> str:
    """The base split a shard's file name says (see the module doc)."""
    stem = path.rstrip("/").rsplit("/", 1)[-1].split(".tar")[0]
    for word in re.split(r"[-_.]", stem):
        if word.lower() in SPLIT_ALIASES:
            return canonical_split(word)
    return "train"


def expand_shards(uri: str, root: Location, *, task: str = "?") -> list[str]:
    """The shard paths (fsspec) a pattern, file or folder names, in order."""
    from braceexpand import braceexpand

    fs = root.fs
    if "{" in uri:
        paths = list(braceexpand(root.path))
    elif "*" in root.path or "?" in root.path:
        paths = sorted(fs.glob(root.path))
    elif root.path.lower().endswith(".tar"):
        paths = [root.path]
    else:
        try:
            listed = fs.ls(root.path, detail=False)
        except (OSError, ValueError) as err:
            raise DatasetError(task, FIELD, uri, f"cannot list {root.uri}: {err}") from err
        paths = sorted(str(p) for p in listed if str(p).lower().endswith(".tar"))
    if not paths:
        raise DatasetError(task, FIELD, uri, "no .tar shards match")
    return paths


def load_shards(
    uri: str, root: Location, *, task: str = "?", cache_dir: Path | None = None
) -> Source:
    """Index the shards ``uri`` names (cached; see module doc) and return them as a source."""
    paths = expand_shards(uri, root, task=task)
    cache = (cache_dir or default_cache_dir()) / "shard-index"
    per_split: dict[str, list[tuple[int, dict[str, np.ndarray]]]] = {}
    for k, path in enumerate(paths):
        index = shard_index(root.at(path), cache, task=task, source=uri)
        per_split.setdefault(shard_split(path), []).append((k, index))
    splits: dict[str, Records] = {}
    for split, indexes in per_split.items():
        shard = np.concatenate([np.full(len(ix["offset"]), k, np.int32) for k, ix in indexes])
        labels = np.concatenate([ix["label"] for _, ix in indexes]).astype(np.int64)
        splits[split] = ShardRecords(
            root,
            tuple(paths),
            shard,
            np.concatenate([ix["offset"] for _, ix in indexes]),
            np.concatenate([ix["size"] for _, ix in indexes]),
            np.concatenate([ix["member"] for _, ix in indexes]),
            labels,
            uri,
        )
    top = max((int(r.labels.max()) for r in splits.values() if len(r)), default=-1)
    if top < 0:
        raise DatasetError(task, FIELD, uri, "the shards hold no samples")
    return Source(
        name=root.name.split("{")[0].rstrip("-_.") or "shards",
        splits=splits,
        num_classes=top + 1,
        origin=uri,
        kind="shards",
    )


def shard_index(
    shard: Location, cache: Path, *, task: str = "?", source: str = ""
) -> dict[str, np.ndarray]:
    """The sample index of one shard, from the cache or by scanning its tar headers."""
    try:
        token = version_token(shard)
    except FileNotFoundError as err:
        raise DatasetError(task, FIELD, source, f"shard {shard.uri} does not exist") from err
    except OSError as err:
        raise DatasetError(task, FIELD, source, f"cannot stat shard {shard.uri}: {err}") from err
    key = hashlib.sha256(f"{_INDEX_VERSION}|{shard.uri}|{token}".encode()).hexdigest()[:32]
    cached = cache / f"{key}.npz"
    if cached.is_file():
        with np.load(cached, allow_pickle=False) as stored:
            return {k: stored[k] for k in ("offset", "size", "label", "member")}
    index = scan_shard(shard, task=task, source=source)
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache, prefix=key, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, **index)  # type: ignore[arg-type]
        os.replace(tmp, cached)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return index


def scan_shard(shard: Location, *, task: str = "?", source: str = "") -> dict[str, np.ndarray]:
    """Read one shard's tar headers (and label members) into its sample index."""
    from webdataset.tariterators import base_plus_ext

    offsets: list[int] = []
    sizes: list[int] = []
    labels: list[int] = []
    members: list[bytes] = []
    current: str | None = None
    sample: dict[str, tuple[int, int, str]] = {}
    label: int | None = None

    def close() -> None:
        if current is None:
            return
        image = next((sample[e] for e in IMAGE_EXTS if e in sample), None)
        if image is None:
            raise DatasetError(
                task, FIELD, source, f"sample {current} in shard {shard.uri} has no image"
            )
        if label is None:
            raise DatasetError(
                task,
                FIELD,
                source,
                f"sample {current} in shard {shard.uri} has no label (.cls or .json)",
            )
        offsets.append(image[0])
        sizes.append(image[1])
        members.append(image[2].encode())
        labels.append(label)

    try:
        with (
            shard.fs.open(shard.path, "rb", block_size=2**23) as handle,
            tarfile.open(fileobj=handle, mode="r:") as tar,
        ):
            for info in tar:
                if not info.isfile():
                    continue
                key, ext = base_plus_ext(info.name)
                if key is None or ext is None or "/__" in f"/{key}":  # WebDataset meta files
                    continue
                if key != current:
                    close()
                    current, sample, label = key, {}, None
                ext = ext.lower()
                sample[ext] = (info.offset_data, info.size, info.name)
                if ext in LABEL_EXTS or ext == "json":
                    raw = tar.extractfile(info)
                    value = _label(raw.read() if raw else b"", ext)
                    where = f"{shard.uri}:{info.name}"
                    if value is None and ext != "json":
                        raise DatasetError(
                            task, FIELD, source, f"label member {where} is not an integer"
                        )
                    if value is not None and not 0 <= value < MAX_CLASSES:
                        raise DatasetError(
                            task,
                            FIELD,
                            source,
                            f"label {value} in {where} is out of range (0..{MAX_CLASSES - 1})",
                        )
                    if value is not None:
                        label = value
            close()
    except DatasetError:
        raise
    except (OSError, tarfile.TarError, EOFError) as err:
        raise DatasetError(
            task, FIELD, source, f"cannot read shard {shard.uri}: {type(err).__name__}: {err}"
        ) from err
    return {
        "offset": np.array(offsets, dtype=np.int64),
        "size": np.array(sizes, dtype=np.int64),
        "label": np.array(labels, dtype=np.int64),
        "member": np.array(members, dtype=np.bytes_) if members else np.zeros(0, "S1"),
    }


def _label(raw: bytes, ext: str) -> int | None:
    text = raw.decode("utf-8", errors="replace").strip()
    if ext == "json":
        try:
            value = json.loads(text)
        except ValueError:
            return None
        if isinstance(value, dict):
            for name in ("label", "cls", "target"):
                if isinstance(value.get(name), int) and not isinstance(value.get(name), bool):
                    return int(value[name])
        return None
    try:
        return int(text)
    except ValueError:
        return None
