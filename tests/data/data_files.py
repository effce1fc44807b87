"""Small datasets on disk for the data tests: image folders, WebDataset shards, Hugging Face
datasets (saved to disk or as Parquet), written with the tools users write them with."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("cat", "dog", "emu")


def pixels(n: int, h: int = 12, w: int = 10, c: int = 3, seed: int = 0) -> np.ndarray:
    """Random uint8 images [n, h, w, c]."""
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, c), dtype=np.uint8)


def encode(image: np.ndarray, fmt: str = "PNG", mode: str | None = None) -> bytes:
    """One image [h, w, c] as file bytes (PNG is lossless; ``mode`` converts first)."""
    im = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
    if mode is not None:
        im = im.convert(mode)
    out = io.BytesIO()
    im.save(out, format=fmt)
    return out.getvalue()


def write_folder(
    root: Path,
    splits: Mapping[str, int] | None = None,
    classes: Sequence[str] = CLASSES,
    *,
    flat: int | None = None,
    size: tuple[int, int] = (12, 10),
    seed: int = 0,
    fmt: str = "PNG",
) -> dict[str, dict[str, np.ndarray]]:
    """``root/<split>/<class>/<i>.png`` (or ``root/<class>/...`` with ``flat`` per class);
    returns split -> relative file name -> its pixels."""
    written: dict[str, dict[str, np.ndarray]] = {}
    layout = {"": flat} if flat is not None else dict(splits or {"train": 8, "test": 2})
    for k, (split, per_class) in enumerate(layout.items()):
        assert per_class is not None
        images = pixels(per_class * len(classes), *size, seed=seed + k)
        files: dict[str, np.ndarray] = {}
        for j, cls in enumerate(classes):
            folder = root / split / cls if split else root / cls
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                name = f"{i:04d}.{fmt.lower()}"
                image = images[j * per_class + i]
                (folder / name).write_bytes(encode(image, fmt))
                files[f"{cls}/{name}"] = image
        written[split or "train"] = files
    return written


def write_shards(
    folder: Path,
    split: str,
    count: int,
    *,
    per_shard: int = 10,
    classes: int = 3,
    seed: int = 0,
    fmt: str = "PNG",
    label_ext: str = "cls",
) -> tuple[list[Path], np.ndarray, np.ndarray]:
    """``folder/<split>-%04d.tar`` written by ``webdataset.ShardWriter``; returns the shard
    paths, the images and their labels in order."""
    import webdataset as wds

    folder.mkdir(parents=True, exist_ok=True)
    images = pixels(count, seed=seed)
    labels = (np.arange(count) * 7 + seed) % classes
    pattern = str(folder / f"{split}-%04d.tar")
    with wds.ShardWriter(pattern, maxcount=per_shard, verbose=0) as sink:
        for i in range(count):
            sample = {"__key__": f"sample{i:06d}", fmt.lower(): encode(images[i], fmt)}
            sample[label_ext] = str(int(labels[i])).encode()
            sink.write(sample)
    shards = sorted(folder.glob(f"{split}-*.tar"))
    return shards, images, labels.astype(np.int64)


def write_hf(
    path: Path,
    splits: Mapping[str, int],
    *,
    parquet: bool = False,
    classes: Sequence[str] = CLASSES,
    labels: Mapping[str, Sequence[int]] | None = None,
    seed: int = 0,
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A ``DatasetDict`` (Image + ClassLabel features) saved with ``save_to_disk``, or as
    Parquet files ``path/data/<split>-00000-of-00001.parquet``; returns its arrays."""
    from datasets import ClassLabel, Dataset, DatasetDict, Features
    from datasets import Image as ImageFeature

    features = Features({"image": ImageFeature(), "label": ClassLabel(names=list(classes))})
    arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    parts = {}
    for k, (split, n) in enumerate(splits.items()):
        images = pixels(n, seed=seed + k)
        y = np.asarray(labels[split] if labels and split in labels else np.arange(n) % len(classes))
        parts[split] = Dataset.from_dict(
            {"image": [Image.fromarray(im) for im in images], "label": y.tolist()},
            features=features,
        )
        arrays[split] = (images, y.astype(np.int64))
    if parquet:
        (path / "data").mkdir(parents=True, exist_ok=True)
        for split, ds in parts.items():
            ds.to_parquet(str(path / "data" / f"{split}-00000-of-00001.parquet"))
    else:
        DatasetDict(parts).save_to_disk(str(path))
    return arrays
