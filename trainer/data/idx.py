"""Read and write IDX files (the MNIST format, optionally gzipped) and load idx folders."""

from __future__ import annotations

import gzip
import re
import struct
from pathlib import Path

import numpy as np

from mutask.trainer.data.arrays import ImageSplit, Source, make_source, make_split
from mutask.trainer.data.errors import DatasetError

# Type code 0x08 (unsigned byte) is the only one image datasets use.
_UBYTE = 0x08
# e.g. train-images-idx3-ubyte.gz, t10k-labels.idx1-ubyte, emnist-letters-test-images-idx3-ubyte
_IDX_NAME = re.compile(
    r"^(?:.*-)?(?P<split>train|t10k|test)-(?P<kind>images|labels)[-.]idx(?P<ndim>[13])-ubyte"
    r"(?:\.gz)?$"
)
_SPLIT_NAMES = {"train": "train", "t10k": "test", "test": "test"}


def read_idx(path: Path, *, task: str = "?", field: str = "dataset.source") -> np.ndarray:
    """Read one IDX file (``.gz`` is decompressed) into a uint8 array of its stored shape."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as err:
        raise DatasetError(task, field, str(path), f"cannot read idx file: {err}") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetError(task, field, str(path), "not an idx file (bad magic number)")
    if raw[2] != _UBYTE:
        raise DatasetError(
            task, field, str(path), f"idx type code {raw[2]:#04x} unsupported (only ubyte 0x08)"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DatasetError(task, field, str(path), "truncated idx header")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    size = int(np.prod(dims))
    if len(raw) - header != size:
        raise DatasetError(
            task,
            field,
            str(path),
            f"idx payload has {len(raw) - header} bytes, header says {dims} = {size}",
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def write_idx(path: Path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzipped when ``path`` ends in ``.gz``)."""
    data = np.ascontiguousarray(array, dtype=np.uint8)
    raw = bytes([0, 0, _UBYTE, data.ndim]) + struct.pack(f">{data.ndim}I", *data.shape)
    raw += data.tobytes()
    path.write_bytes(gzip.compress(raw, mtime=0) if path.suffix == ".gz" else raw)


def find_idx_files(folder: Path) -> dict[str, dict[str, Path]]:
    """Map base split -> {"images": path, "labels": path} for the idx files in ``folder``.

    A plain file is preferred over its ``.gz`` twin when both exist.
    """
    found: dict[str, dict[str, Path]] = {}
    for path in sorted(folder.iterdir(), key=lambda p: (p.suffix == ".gz", p.name)):
        match = _IDX_NAME.match(path.name)
        if match is None or not path.is_file():
            continue
        split = _SPLIT_NAMES[match["split"]]
        found.setdefault(split, {}).setdefault(match["kind"], path)
    return found


def load_idx_folder(
    folder: Path,
    *,
    name: str,
    task: str = "?",
    field: str = "dataset.source",
    num_classes: int | None = None,
) -> Source:
    """Load every complete images/labels pair of a folder of idx files as a ``Source``."""
    if not folder.is_dir():
        raise DatasetError(task, field, str(folder), "no such folder")
    files = find_idx_files(folder)
    splits: dict[str, ImageSplit] = {}
    for split, pair in sorted(files.items()):
        if set(pair) != {"images", "labels"}:
            missing = ({"images", "labels"} - set(pair)).pop()
            raise DatasetError(
                task, field, str(folder), f"split {split!r} has no {missing} idx file"
            )
        images = read_idx(pair["images"], task=task, field=field)
        labels = read_idx(pair["labels"], task=task, field=field)
        splits[split] = make_split(
            images, labels, task=task, field=field, where=str(pair["images"])
        )
    if not splits:
        raise DatasetError(
            task,
            field,
            str(folder),
            "no idx files found (expected e.g. train-images-idx3-ubyte.gz and "
            "train-labels-idx1-ubyte.gz)",
        )
    return make_source(
        name, splits, task=task, field=field, origin=str(folder), num_classes=num_classes
    )
