"""Image folders as a source: one sub-folder per class, JPEG/PNG (and other Pillow) files.

Two layouts (local, ``file://`` or ``gs://``)::

    ROOT/<class>/<image>                    one base split, ``train``
    ROOT/<split>/<class>/<image>            base splits by name: train, validation (or
                                            val/valid/dev), test

Classes are the sorted class-folder names over all splits (label = position), like
torchvision's ``ImageFolder``. Within a base split the files are listed in sorted order and
then put in a FIXED order by ``numpy.random.default_rng(0).permutation``, so TFDS slices
(``train[:90%]`` / ``train[90%:]``) mix the classes instead of cutting off the last ones.
Listing is one recursive listing of ROOT; nothing is opened until read. A class folder
without images, or an image outside any class folder, raises ``DatasetError`` naming it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mutask.trainer.data.arrays import Source
from mutask.trainer.data.decode import decode_with_mode, is_image_name
from mutask.trainer.data.errors import DatasetError
from mutask.trainer.data.filesystem import FIELD, Location, read_ranges
from mutask.trainer.data.records import SPLIT_ALIASES, Records, canonical_split


@dataclass(frozen=True, eq=False)
class FolderRecords:
    """One base split of an image folder: file paths relative to ``root``, and labels."""

    root: Location
    names: np.ndarray  # bytes [N], "<class>/<file>" relative to root
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def path(self, row: int) -> str:
        return f"{self.root.path.rstrip('/')}/{self.names[row].decode()}"

    def where(self, row: int) -> str:
        return self.root.at(self.path(row)).uri

    def fetch(self, rows: np.ndarray, *, task: str = "?") -> list[tuple[np.ndarray, str]]:
        paths = [self.path(int(r)) for r in rows]
        data = read_ranges(self.root, paths, task=task, source=self.source, what="image")
        return [
            decode_with_mode(raw, self.root.at(p).uri, task=task, source=self.source)
            for raw, p in zip(data, paths, strict=True)
        ]


def list_entries(root: Location, path: str, *, task: str, origin: str) -> list[tuple[str, bool]]:
    """(name, is a folder) of the entries directly in ``path``."""
    try:
        listed = root.fs.ls(path, detail=True)
    except (OSError, ValueError) as err:
        raise DatasetError(task, FIELD, origin, f"cannot list {root.at(path).uri}: {err}") from err
    out = []
    for info in listed:
        name = str(info["name"]).rstrip("/").rsplit("/", 1)[-1]
        if name and str(info["name"]).rstrip("/") != path.rstrip("/"):
            out.append((name, info.get("type") == "directory"))
    return sorted(out)


def is_image_folder(entries: list[tuple[str, bool]]) -> bool:
    """Whether a folder's top-level ``(name, is a folder)`` entries may be an image folder
    (it has sub-folders; ``load_image_folder`` then checks the layout)."""
    return any(d for _, d in entries)


def load_image_folder(root: Location, *, origin: str, task: str = "?") -> Source:
    """Load the listing of an image folder (see the module doc) as a ``Source``."""
    base = root.path.rstrip("/")
    top = list_entries(root, base, task=task, origin=origin)
    top_dirs = [n for n, d in top if d]
    split_layout = bool(top_dirs) and all(n.lower() in SPLIT_ALIASES for n in top_dirs)
    stray = [n for n, d in top if not d and is_image_name(n)]
    layout = "ROOT/<split>/<class>/<image>" if split_layout else "ROOT/<class>/<image>"
    if stray:
        raise DatasetError(
            task,
            FIELD,
            origin,
            f"image {root.child(stray[0]).uri} is not in a class folder (layout {layout})",
        )
    class_dirs: list[tuple[str, str]] = []  # (base split, "<split>/<class>" or "<class>")
    for name in top_dirs:
        if not split_layout:
            class_dirs.append(("train", name))
            continue
        inner = list_entries(root, f"{base}/{name}", task=task, origin=origin)
        for n, d in inner:
            if not d and is_image_name(n):
                where = root.child(f"{name}/{n}").uri
                raise DatasetError(
                    task, FIELD, origin, f"image {where} is not in a class folder (layout {layout})"
                )
        class_dirs += [(canonical_split(name), f"{name}/{n}") for n, d in inner if d]
    classes = sorted({rel.rsplit("/", 1)[-1] for _, rel in class_dirs})
    if not classes:
        raise DatasetError(
            task,
            FIELD,
            origin,
            f"no class folders under {root.uri} (expected {layout})",
        )
    index = {name: k for k, name in enumerate(classes)}
    grouped: dict[str, list[tuple[str, int]]] = {}
    for split, rel in class_dirs:
        folder = f"{base}/{rel}"
        try:
            found = root.fs.find(folder, detail=False)
        except (OSError, ValueError) as err:
            raise DatasetError(
                task, FIELD, origin, f"cannot list {root.at(folder).uri}: {err}"
            ) from err
        label = index[rel.rsplit("/", 1)[-1]]
        members = grouped.setdefault(split, [])
        before = len(members)
        for path in found:
            name = path[len(folder) :].strip("/")
            if not is_image_name(name):
                continue
            if "/" in name:
                where = root.at(path).uri
                raise DatasetError(
                    task,
                    FIELD,
                    origin,
                    f"image {where} is in a sub-folder of a class folder (layout {layout})",
                )
            members.append((f"{rel}/{name}", label))
        if len(members) == before:
            raise DatasetError(
                task, FIELD, origin, f"class folder {root.child(rel).uri} has no images"
            )
        del found
    splits: dict[str, Records] = {}
    for split, members in grouped.items():
        members.sort()
        order = np.random.default_rng(0).permutation(len(members))
        names = np.array([members[i][0].encode() for i in order], dtype=np.bytes_)
        labels = np.array([members[i][1] for i in order], dtype=np.int64)
        splits[split] = FolderRecords(root, names, labels, origin)
    return Source(
        name=root.name,
        splits=splits,
        num_classes=len(classes),
        origin=origin,
        kind="folder",
        class_names=tuple(classes),
    )
