"""The object-store contract on both backends: CAS, touch, conditional delete, listing."""

from __future__ import annotations

import pytest
from google.api_core import exceptions as gexc

from mutask.trainer.store.gcs import GcsObjectStore
from mutask.trainer.store.objects import (
    NotFound,
    ObjectStore,
    PreconditionFailed,
    StoreAccessError,
    StoreError,
    open_object_store,
)
from mutask.trainer.store.uri import StoreURIError


def test_create_only_and_compare_and_swap(objects: ObjectStore) -> None:
    g1 = objects.write("tasks/a/manifest.json", b"one", if_generation=0)
    with pytest.raises(PreconditionFailed, match=r"tasks/a/manifest\.json"):
        objects.write("tasks/a/manifest.json", b"again", if_generation=0)
    g2 = objects.write("tasks/a/manifest.json", b"two", if_generation=g1)
    assert g2 != g1
    with pytest.raises(PreconditionFailed):  # the stale generation lost
        objects.write("tasks/a/manifest.json", b"three", if_generation=g1)
    assert objects.read("tasks/a/manifest.json") == (b"two", g2)
    info = objects.stat("tasks/a/manifest.json")
    assert info is not None and info.generation == g2 and info.size == 3


def test_missing_objects_name_themselves(objects: ObjectStore) -> None:
    with pytest.raises(NotFound, match="nope/x"):
        objects.read("nope/x")
    with pytest.raises(NotFound, match="nope/x"):
        objects.delete("nope/x")
    with pytest.raises(NotFound, match="nope/x"):
        objects.touch("nope/x")
    assert objects.stat("nope/x") is None
    with pytest.raises(PreconditionFailed):  # updating something absent is a lost CAS
        objects.write("nope/y", b"", if_generation=12345)


def test_touch_refreshes_and_conditional_delete(objects: ObjectStore) -> None:
    gen = objects.write("blobs/b1", b"payload")
    before = objects.stat("blobs/b1")
    touched = objects.touch("blobs/b1")
    after = objects.stat("blobs/b1")
    assert before is not None and after is not None
    assert touched == after.generation != gen
    assert after.updated >= before.updated
    assert objects.read("blobs/b1")[0] == b"payload"
    if not isinstance(objects, GcsObjectStore):
        # real GCS enforces this too; fake-gcs-server ignores delete preconditions, which
        # is why GC also re-stats each victim right before deleting it (test_store_gc)
        with pytest.raises(PreconditionFailed):  # GC's listing was stale: the blob survives
            objects.delete("blobs/b1", if_generation=gen)
        assert objects.stat("blobs/b1") is not None
    objects.delete("blobs/b1", if_generation=touched)
    assert objects.stat("blobs/b1") is None


def test_list_is_relative_to_the_prefix(objects: ObjectStore) -> None:
    for key in ("blobs/x", "blobs/y", "tasks/t/manifest.json"):
        objects.write(key, key.encode())
    assert [o.key for o in objects.list("blobs/")] == ["blobs/x", "blobs/y"]
    assert [o.key for o in objects.list()] == ["blobs/x", "blobs/y", "tasks/t/manifest.json"]


def test_uri_chooses_the_backend(gs_uri: str, tmp_path: object) -> None:
    store = open_object_store(gs_uri)
    assert isinstance(store, GcsObjectStore) and store.uri == gs_uri
    assert store.prefix == "system"
    with pytest.raises(StoreURIError, match="unsupported scheme 's3'"):
        open_object_store("s3://bucket/x")


def test_gcs_retries_transient_errors_then_names_the_object(gs_uri: str) -> None:
    store = GcsObjectStore.from_uri(gs_uri)
    store.sleep = lambda _s: None
    calls = []

    def flaky(attempt: int) -> str:
        calls.append(attempt)
        if attempt < 2:
            raise gexc.ServiceUnavailable("try later")
        return "ok"

    assert store._call("k", "read", flaky) == "ok" and calls == [0, 1, 2]

    def down(attempt: int) -> str:
        raise gexc.TooManyRequests("slow down")

    with pytest.raises(StoreError, match=r"gs://.*/system/k: read failed after 6 attempts"):
        store._call("k", "read", down)

    def bad(attempt: int) -> str:
        calls.append(attempt)
        raise gexc.Forbidden("no access")

    calls.clear()
    with pytest.raises(StoreAccessError, match=r"system/k: read denied \(403\)"):
        store._call("k", "read", bad)
    assert calls == [0]  # not retried: a retry cannot fix a permission


def test_gcs_refuses_large_cas_writes(gs_uri: str) -> None:
    store = GcsObjectStore.from_uri(gs_uri)
    with pytest.raises(StoreError, match="compare-and-swap write of"):
        store.write("tasks/t/manifest.json", b"x" * (8 * 1024 * 1024 + 1), if_generation=0)


def test_gcs_retried_cas_write_that_landed_counts_as_won(gs_uri: str) -> None:
    """A CAS whose reply was lost lands; the retry then sees 412 but the bytes are ours."""
    store = GcsObjectStore.from_uri(gs_uri)
    store.sleep = lambda _s: None
    real = store.bucket.blob
    state = {"calls": 0}

    def blob(name: str) -> object:
        b = real(name)
        upload = b.upload_from_string

        def lossy(*args: object, **kw: object) -> None:
            state["calls"] += 1
            upload(*args, **kw)  # type: ignore[arg-type]
            if state["calls"] == 1:
                raise gexc.ServiceUnavailable("reply lost")

        b.upload_from_string = lossy  # type: ignore[method-assign]
        return b

    store.bucket.blob = blob  # type: ignore[method-assign]
    gen = store.write("tasks/t/lease.json", b"mine", if_generation=0)
    store.bucket.blob = real  # type: ignore[method-assign]
    assert state["calls"] == 2
    assert store.read("tasks/t/lease.json") == (b"mine", gen)
