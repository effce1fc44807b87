"""Image folders: both layouts, class names and labels, the fixed order, decoding of every
image mode (converted and logged), and bad folders and files named in the error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_files import CLASSES, encode, pixels, write_folder
from PIL import Image

from mutask.trainer.config import DatasetConfig
from mutask.trainer.data import DatasetError, Examples, load_source, load_task, source_info
from mutask.trainer.data.decode import conversions, decode_with_mode


def _decoded(src_split: object, rows: list[int]) -> list[np.ndarray]:
    return [im for im, _ in src_split.fetch(np.array(rows))]  # type: ignore[attr-defined]


def test_split_layout_classes_labels_and_pixels(tmp_path: Path) -> None:
    written = write_folder(tmp_path / "pets", {"train": 5, "val": 2, "test": 3})
    src = load_source(str(tmp_path / "pets"))
    assert src.kind == "folder" and src.name == "pets"
    assert src.class_names == CLASSES and src.num_classes == 3
    assert {k: len(v) for k, v in src.splits.items()} == {"train": 15, "validation": 6, "test": 9}
    train = src.splits["train"]
    names = [n.decode() for n in train.names]  # type: ignore[attr-defined]
    assert sorted(names) == sorted(f"train/{f}" for f in written["train"])
    for row, name in enumerate(names):  # labels follow the class folder, pixels the file
        cls, file = name.split("/")[1:]
        assert train.labels[row] == CLASSES.index(cls)
        np.testing.assert_array_equal(_decoded(train, [row])[0], written["train"][f"{cls}/{file}"])
    # a fixed, class-mixing order: the same on every load, not class by class
    again = load_source((tmp_path / "pets").as_uri()).splits["train"]
    assert names == [n.decode() for n in again.names]  # type: ignore[attr-defined]
    assert train.labels.tolist() != sorted(train.labels.tolist())


def test_flat_layout_is_one_train_split_and_auto_splits_slice_it(tmp_path: Path) -> None:
    write_folder(tmp_path / "flat", flat=10)
    src = load_source(str(tmp_path / "flat"))
    assert list(src.splits) == ["train"] and len(src.splits["train"]) == 30
    cfg = DatasetConfig(
        source=str(tmp_path / "flat"), train_split="train[3:90%]", test_split="train[:3]"
    )
    data = load_task("t", cfg)
    assert (len(data.train), len(data.validation), len(data.test)) == (24, 3, 3)
    assert set(data.validation.labels.tolist()) <= {0, 1, 2}


def test_auto_uses_the_folder_s_own_validation_split(tmp_path: Path) -> None:
    write_folder(tmp_path / "pets", {"train": 4, "validation": 2, "test": 1})
    data = load_task("t", DatasetConfig(source=str(tmp_path / "pets")))
    assert (len(data.train), len(data.validation), len(data.test)) == (12, 6, 3)


def test_source_info_is_cheap_and_says_the_native_size(tmp_path: Path) -> None:
    write_folder(tmp_path / "pets", {"train": 2, "test": 1}, size=(40, 30))
    info = source_info(str(tmp_path / "pets"))
    assert (info.kind, info.num_classes, info.image_shape) == ("folder", 3, (40, 30, 3))
    assert info.image_size == 40 and info.split_sizes == {"train": 6, "test": 3}
    assert info.class_names == CLASSES


def test_labels_and_transforms_work_on_folders(tmp_path: Path) -> None:
    written = write_folder(tmp_path / "pets", {"train": 4, "test": 2})
    cfg = DatasetConfig(source=str(tmp_path / "pets"), labels=[2, 0], transform="flip_lr")
    data = load_task("t", cfg)
    assert data.num_classes == 2 and set(data.test.labels.tolist()) == {0, 1}
    first = data.test.read(np.array([0]))
    name = data.test.where(0).rsplit("/", 2)
    original = written["test"][f"{name[-2]}/{name[-1]}"]
    np.testing.assert_array_equal(first.images[0], original[:, ::-1])
    assert first.labels[0] == (0 if name[-2] == "emu" else 1)


@pytest.mark.parametrize(
    ("mode", "channels", "target"),
    [
        ("L", 1, None),
        ("RGB", 3, None),
        ("RGBA", 3, "RGB"),
        ("P", 3, "RGB"),
        ("CMYK", 3, "RGB"),
        ("LA", 1, "L"),
        ("1", 1, "L"),
        ("I;16", 1, "L"),
    ],
)
def test_every_mode_decodes_to_gray_or_rgb(mode: str, channels: int, target: str | None) -> None:
    image = pixels(1, 6, 5)[0]
    fmt = "TIFF" if mode in ("CMYK", "I;16") else "PNG"
    if mode == "I;16":
        raw = np.arange(30, dtype=np.uint16).reshape(6, 5) * 2000
        im = Image.fromarray(raw)
        buffer = __import__("io").BytesIO()
        im.save(buffer, format="PNG")
        data = buffer.getvalue()
    else:
        data = encode(image, fmt, mode)
    array, found = decode_with_mode(data, "x.png")
    assert array.dtype == np.uint8 and array.shape == (6, 5, channels)
    assert conversions({found: "x.png"}) == ({} if target is None else {found: (target, "x.png")})
    if mode == "I;16":
        np.testing.assert_array_equal(array[..., 0], np.rint(raw / 257.0).astype(np.uint8))


def test_mixed_modes_are_converted_and_logged_once(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    for cls, mode in (("a", "L"), ("b", "RGB"), ("c", "RGBA")):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            (root / cls / f"{i}.png").write_bytes(encode(pixels(1, seed=i)[0], mode=mode))
    src = load_source(str(root))
    batch = Examples.of(src.splits["train"]).read(np.arange(9))
    assert {im.shape[-1] for im in batch.images} == {1, 3}
    assert set(batch.modes) == {"L", "RGB", "RGBA"}
    assert conversions(batch.modes) == {
        "RGBA": ("RGB", batch.modes["RGBA"]),
        "L": ("RGB", batch.modes["L"]),
    }
    assert batch.modes["RGBA"].endswith(".png") and "/c/" in batch.modes["RGBA"]


def _expect(path: Path, text: str) -> str:
    with pytest.raises(DatasetError) as info:
        src = load_source(str(path), task="tsk")
        for records in src.splits.values():
            records.fetch(np.arange(len(records)), task="tsk")
    message = str(info.value)
    assert message.startswith("task 'tsk': dataset.source="), message
    assert text in message, message
    return message


def test_a_class_folder_without_images_is_named(tmp_path: Path) -> None:
    write_folder(tmp_path / "pets", {"train": 2})
    (tmp_path / "pets" / "train" / "yak").mkdir()
    (tmp_path / "pets" / "train" / "yak" / "notes.txt").write_text("no images here")
    assert "pets/train/yak" in _expect(tmp_path / "pets", "has no images")


def test_an_image_outside_class_folders_is_named(tmp_path: Path) -> None:
    write_folder(tmp_path / "pets", flat=2)
    (tmp_path / "pets" / "stray.png").write_bytes(encode(pixels(1)[0]))
    assert "stray.png" in _expect(tmp_path / "pets", "is not in a class folder")


def test_truncated_and_unreadable_images_are_named(tmp_path: Path) -> None:
    write_folder(tmp_path / "pets", flat=2, fmt="JPEG")
    victim = tmp_path / "pets" / "dog" / "0001.jpeg"
    victim.write_bytes(victim.read_bytes()[:200])
    message = _expect(tmp_path / "pets", "cannot decode image")
    assert str(victim) in message and "truncated" in message
    victim.write_bytes(b"not an image at all")
    assert str(victim) in _expect(tmp_path / "pets", "cannot identify image file")
