"""Fixtures of the bad-input and damaged-store tests: a tiny store (root + one task) built
once per session in process, copies of it, and files of bad data."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import torch
from errors_testutil import TINY_FLAGS, Places, cli

from mutask.contract import ExitCode


@pytest.fixture(autouse=True, scope="session")
def _single_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def grown(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local store holding a root (bootstrapped on digits) and task ``low`` (digits 0-4)."""
    store = tmp_path_factory.mktemp("grown") / "store"
    argv = ["introduce", "--store", str(store), "--task", "digits", "--bootstrap-root"]
    assert cli([*argv, *TINY_FLAGS, "--no-verify"])[0] == ExitCode.OK
    argv = ["introduce", "--store", str(store), "--task", "low", "--labels", "0,1,2,3,4"]
    assert cli([*argv, *TINY_FLAGS, "--no-verify"])[0] == ExitCode.OK
    return store


@pytest.fixture
def copy_of(tmp_path: Path) -> Callable[[Path], Path]:
    """``copy_of(store)``: a private copy (for tests that damage it)."""

    def copy(store: Path) -> Path:
        dst = tmp_path / "copy" / "store"
        shutil.copytree(store, dst)
        return dst

    return copy


@pytest.fixture
def places(grown: Path, tmp_path: Path) -> Places:
    return Places(grown, tmp_path)
