"""Fixtures of the serving tests: a system grown by the real trainer (once per session) and
a `mutask serve` process over it (once per module)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from serve_support import (
    DIGITS,
    LOW,
    PARITY,
    Served,
    config,
    engine,
    introduce,
    start_server,
    stop_server,
)

from mutask.trainer.iteration.bootstrap import bootstrap_root


@pytest.fixture(autouse=True, scope="session")
def _single_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def grown_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A root and two tasks (`low`, `private:parity`), grown by the real trainer on digits.
    Tests that change a store work on a copy."""
    store = tmp_path_factory.mktemp("serving") / "store"
    bootstrap_root(engine(store), config(store, "digits", DIGITS))
    introduce(store, "low", LOW)
    introduce(store, "private:parity", PARITY)
    return store


@pytest.fixture
def store_copy(grown_store: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "store"
    shutil.copytree(grown_store, copy)
    return copy


@pytest.fixture(scope="module")
def server(grown_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """`mutask serve` over the grown store (read only)."""
    served = start_server(["--store", str(grown_store)], tmp_path_factory.mktemp("server"))
    yield served
    stop_server(served)
