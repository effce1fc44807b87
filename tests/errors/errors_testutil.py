"""Helpers of the error tests: run `mutask` in process, snapshot a store, write bad files."""

from __future__ import annotations

import io
import json
import zipfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import numpy as np

from mutask.contract import ExitCode
from mutask.trainer.cli import main

TINY_FLAGS = [
    "--generations",
    "1",
    "--candidates",
    "2",
    "--rounds",
    "1",
    "--steps",
    "5",
    "--quiet",
    "--device",
    "cpu",
]
INTRO = ["introduce", "--store", "{S}", "--task", "newt", *TINY_FLAGS]
BOOT = ["introduce", "--store", "{E}", "--task", "newt", "--bootstrap-root", *TINY_FLAGS]


def cli(argv: list[str]) -> tuple[int, str, str]:
    """``mutask ARGV`` in this process: (exit code, stdout, stderr); argparse's exits too."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 2
    return int(code), out.getvalue(), err.getvalue()


def snapshot(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` (hidden ones too) and its bytes; {} when it does not exist."""
    if not root.exists():
        return {}
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def error_line(stderr: str) -> str:
    """The one error line a failed command prints (``mutask: error: ...`` or argparse's)."""
    lines = [ln for ln in stderr.splitlines() if ": error: " in ln]
    assert len(lines) == 1, f"expected exactly one error line:\n{stderr}"
    return lines[0]


def write_npz(path: Path, **arrays: Any) -> Path:
    np.savez(path, **arrays)
    return path


def images(n: int, size: int = 8, dtype: Any = np.uint8, value: int = 7) -> np.ndarray:
    return np.full((n, size, size), value, dtype=dtype)


def bad_npz_files(folder: Path) -> dict[str, Path]:
    """One ``.npz`` (or not) per way a dataset file can be wrong, by name."""
    folder.mkdir(parents=True, exist_ok=True)
    two = np.array([0, 1] * 10)
    files = {
        "huge-label": write_npz(
            folder / "huge.npz", x_train=images(20), y_train=np.array([0] * 19 + [10**9])
        ),
        "one-class": write_npz(
            folder / "one.npz",
            x_train=images(20),
            y_train=np.zeros(20, int),
            x_test=images(10),
            y_test=np.zeros(10, int),
        ),
        "no-arrays": write_npz(folder / "none.npz", a=np.zeros(3)),
        "x-without-y": write_npz(folder / "xonly.npz", x_train=images(20)),
        "float-pixels-above-1": write_npz(
            folder / "float.npz", x_train=images(20, dtype=np.float32, value=3), y_train=two
        ),
        "nan-pixels": write_npz(
            folder / "nan.npz", x_train=np.full((20, 8, 8), np.nan, np.float32), y_train=two
        ),
        "int-pixels-above-255": write_npz(
            folder / "int.npz", x_train=images(20, dtype=np.int32, value=300), y_train=two
        ),
        "flat-images": write_npz(folder / "flat.npz", x_train=np.zeros((20, 64)), y_train=two),
        "four-channels": write_npz(
            folder / "rgba.npz", x_train=np.zeros((20, 8, 8, 4), np.uint8), y_train=two
        ),
        "count-mismatch": write_npz(folder / "count.npz", x_train=images(20), y_train=two[:5]),
        "negative-label": write_npz(
            folder / "neg.npz", x_train=images(20), y_train=np.array([-1, 1] * 10)
        ),
        "float-labels": write_npz(
            folder / "flab.npz", x_train=images(20), y_train=two.astype(np.float32)
        ),
        "empty-images": write_npz(
            folder / "empty.npz", x_train=np.zeros((0, 8, 8), np.uint8), y_train=np.zeros(0, int)
        ),
        "splits-disagree": write_npz(
            folder / "shapes.npz",
            x_train=images(20),
            y_train=two,
            x_test=images(20, size=9),
            y_test=two,
        ),
    }
    garbage = folder / "garbage.npz"
    garbage.write_bytes(b"not a zip archive at all")
    files["not-an-npz"] = garbage
    truncated = folder / "truncated.npz"
    truncated.write_bytes(files["one-class"].read_bytes()[:100])
    files["truncated"] = truncated
    pickled = folder / "pickle.npz"
    with zipfile.ZipFile(pickled, "w") as z:
        buf = io.BytesIO()
        np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
        z.writestr("x_train.npy", buf.getvalue())
        z.writestr("y_train.npy", buf.getvalue())
    files["pickled-objects"] = pickled
    empty_dir = folder / "empty-folder"
    empty_dir.mkdir(exist_ok=True)
    files["folder-without-idx"] = empty_dir
    two_class = write_npz(
        folder / "two.npz",
        x_train=images(40),
        y_train=np.array([0, 1] * 20),
        x_test=images(20),
        y_test=two,
    )
    files["two-class"] = two_class
    return files


def write_config(path: Path, doc: Any) -> Path:
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


class Places:
    """Fills the placeholders of one case (see test_bad_inputs.py's module doc)."""

    def __init__(self, store: Path, tmp: Path) -> None:
        self.store, self.tmp = store, tmp
        self.absent = tmp / "absent-store"
        self.file = tmp / "a-file.txt"
        self.file.write_text("not a store")
        self.data = bad_npz_files(tmp / "data")

    def fill(self, item: str) -> str:
        out = item.replace("{S}", str(self.store)).replace("{E}", str(self.absent))
        out = out.replace("{F}", str(self.file))
        if out.startswith("{npz:"):
            out = str(self.data[out[len("{npz:") : -1]])
        return out


def refused(argv: list[str], places: Places, text: str) -> str:
    """Run ``argv``: exit 2, one error line with ``text``, no traceback, nothing written;
    the error line."""
    before = snapshot(places.store)
    code, out, err = cli([places.fill(a) for a in argv])
    assert code == ExitCode.BAD_INPUT, f"exit {code}\nstdout:\n{out}\nstderr:\n{err}"
    assert "Traceback" not in out + err, err
    line = error_line(err)
    assert text in line, line
    assert snapshot(places.store) == before, "the store changed"
    assert not places.absent.exists(), "a store was created"
    return line
