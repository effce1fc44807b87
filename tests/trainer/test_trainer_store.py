"""store/: the local object store's compare-and-swap, the system store's blobs and
manifests, and blob garbage collection."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mutask.trainer.store.gc import collect_garbage
from mutask.trainer.store.objects import (
    LocalObjectStore,
    NotFound,
    PreconditionFailed,
    StoreDamaged,
    StoreError,
    open_object_store,
)
from mutask.trainer.store.system_store import SystemStore
from mutask.trainer.store.uri import StoreURIError


def _manifest(*blobs: str) -> dict:
    return {"components": {f"c{i}": {"blob": b} for i, b in enumerate(blobs)}}


# -- LocalObjectStore -----------------------------------------------------------------------


def test_create_only_write_succeeds_once(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    gen = store.write("a/b.json", b"one", if_generation=0)
    assert store.read("a/b.json") == (b"one", gen)
    with pytest.raises(PreconditionFailed, match=r"a/b\.json"):
        store.write("a/b.json", b"two", if_generation=0)
    assert store.read("a/b.json")[0] == b"one"


def test_update_with_the_current_generation_succeeds(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    gen = store.write("k", b"one", if_generation=0)
    new = store.write("k", b"two", if_generation=gen)
    assert new != gen
    assert store.read("k") == (b"two", new)


def test_update_with_a_stale_generation_fails_naming_the_object(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    stale = store.write("tasks/t/manifest.json", b"one", if_generation=0)
    store.write("tasks/t/manifest.json", b"two", if_generation=stale)
    with pytest.raises(PreconditionFailed, match=r"tasks/t/manifest\.json"):
        store.write("tasks/t/manifest.json", b"three", if_generation=stale)
    assert store.read("tasks/t/manifest.json")[0] == b"two"


def test_update_of_a_missing_object_fails(tmp_path: Path) -> None:
    with pytest.raises(PreconditionFailed):
        LocalObjectStore(tmp_path).write("k", b"x", if_generation=123)


def test_every_write_gets_a_new_generation(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    gens = [store.write("k", b"%d" % i) for i in range(20)]
    assert len(set(gens)) == len(gens)


def test_writes_leave_no_temp_files(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    gen = store.write("d/k", b"one", if_generation=0)
    store.write("d/k", b"two", if_generation=gen)
    with pytest.raises(PreconditionFailed):
        store.write("d/k", b"three", if_generation=gen)
    assert not [p.name for p in tmp_path.rglob("*.tmp")]
    assert [o.key for o in store.list()] == ["d/k"]  # the flock files are hidden too


def test_read_and_delete_of_a_missing_object_raise_not_found(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    with pytest.raises(NotFound, match="nope"):
        store.read("nope")
    with pytest.raises(NotFound, match="nope"):
        store.delete("nope")
    assert store.stat("nope") is None


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../outside", "a/../../b"])
def test_invalid_keys_are_rejected(tmp_path: Path, key: str) -> None:
    store = LocalObjectStore(tmp_path / "root")
    with pytest.raises(StoreError, match="invalid object key"):
        store.write(key, b"x")
    assert not (tmp_path / "outside").exists()


def test_list_filters_by_prefix_in_key_order(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    for key in ("b/2", "a/1", "b/1"):
        store.write(key, b"x")
    assert [o.key for o in store.list("b/")] == ["b/1", "b/2"]
    assert LocalObjectStore(tmp_path / "missing").list() == []


def test_open_object_store_picks_the_backend_by_uri(tmp_path: Path) -> None:
    assert isinstance(open_object_store(str(tmp_path)), LocalObjectStore)
    assert open_object_store(f"file://{tmp_path}").uri == tmp_path.resolve().as_uri()
    with pytest.raises(StoreURIError, match="unsupported scheme 's3'"):
        open_object_store("s3://bucket/x")


# -- SystemStore ----------------------------------------------------------------------------


def test_blobs_are_content_addressed_and_deduplicated(tmp_path: Path) -> None:
    store = SystemStore(LocalObjectStore(tmp_path))
    digest = store.put_blob(b"weights")
    assert store.put_blob(b"weights") == digest
    assert store.put_blob(b"other") != digest
    assert len(store.objects.list("blobs/")) == 2
    assert store.get_blob(digest) == b"weights"


def test_get_blob_detects_corruption(tmp_path: Path) -> None:
    store = SystemStore(LocalObjectStore(tmp_path))
    digest = store.put_blob(b"weights")
    (tmp_path / "blobs" / f"{digest}.safetensors").write_bytes(b"weightz")
    with pytest.raises(StoreError, match=f"{digest}.*hash mismatch"):
        store.get_blob(digest)


def test_publish_refuses_a_manifest_whose_blobs_are_missing(tmp_path: Path) -> None:
    store = SystemStore(LocalObjectStore(tmp_path))
    present = store.put_blob(b"x")
    with pytest.raises(StoreError, match="deadbeef"):
        store.publish("digits", _manifest(present, "deadbeef"), expected=0)
    assert store.read_manifest("digits") is None


def test_publish_is_compare_and_swap_on_the_manifest(tmp_path: Path) -> None:
    store = SystemStore(LocalObjectStore(tmp_path))
    blob = store.put_blob(b"x")
    gen = store.publish("digits", {**_manifest(blob), "iteration": 1}, expected=0)
    with pytest.raises(PreconditionFailed, match="digits"):
        store.publish("digits", {**_manifest(blob), "iteration": 9}, expected=0)
    new = store.publish("digits", {**_manifest(blob), "iteration": 2}, expected=gen)
    with pytest.raises(PreconditionFailed):
        store.publish("digits", {**_manifest(blob), "iteration": 9}, expected=gen)
    assert store.read_manifest("digits") == ({**_manifest(blob), "iteration": 2}, new)


def test_private_task_names_round_trip(tmp_path: Path) -> None:
    store = SystemStore(LocalObjectStore(tmp_path))
    blob = store.put_blob(b"x")
    for task in ("private:x", "digits"):
        store.publish(task, {**_manifest(blob), "task": task}, expected=0)
    assert store.tasks() == ["digits", "private:x"]
    found = store.read_manifest("private:x")
    assert found is not None and found[0]["task"] == "private:x"
    assert set(store.scan().documents) == {"digits", "private:x"}


def test_resume_state_round_trips_and_clears(tmp_path: Path) -> None:
    store = SystemStore(LocalObjectStore(tmp_path))
    assert store.load_resume("private:x") is None
    state = {"fingerprint": "f-0", "state": {"generation": 2}, "blobs": {}}
    store.save_resume("private:x", state)
    assert store.load_resume("private:x") == state
    assert store.tasks() == []  # a resume state alone is not a published task
    store.clear_resume("private:x")
    store.clear_resume("private:x")  # idempotent
    assert store.load_resume("private:x") is None


def test_a_corrupt_manifest_is_reported_by_name(tmp_path: Path) -> None:
    store = SystemStore(LocalObjectStore(tmp_path))
    store.objects.write("tasks/digits/manifest.json", b"{not json")
    with pytest.raises(StoreDamaged, match=r"tasks/digits/manifest\.json: unreadable manifest"):
        store.read_manifest("digits")


# -- garbage collection ---------------------------------------------------------------------


def _gc_store(tmp_path: Path) -> tuple[SystemStore, dict[str, str]]:
    """Blobs: one published, one in a resume state, one referenced by nothing."""
    store = SystemStore(LocalObjectStore(tmp_path))
    blobs = {name: store.put_blob(name.encode()) for name in ("published", "resume", "orphan")}
    store.publish("digits", _manifest(blobs["published"]), expected=0)
    store.save_resume(
        "private:x", {"fingerprint": "f", "state": {}, "blobs": {"c": blobs["resume"]}}
    )
    return store, blobs


def test_gc_deletes_only_old_unreferenced_blobs(tmp_path: Path) -> None:
    store, blobs = _gc_store(tmp_path)
    report = collect_garbage(store, grace_seconds=60, now=time.time() + 3600)
    assert report.deleted == [blobs["orphan"]]
    assert report.kept == 2 and report.too_young == []
    assert report.bytes_freed == len(b"orphan")
    assert {o.key for o in store.objects.list("blobs/")} == {
        f"blobs/{blobs['published']}.safetensors",
        f"blobs/{blobs['resume']}.safetensors",
    }


def test_gc_keeps_young_unreferenced_blobs(tmp_path: Path) -> None:
    store, blobs = _gc_store(tmp_path)
    report = collect_garbage(store, grace_seconds=3600, now=time.time())
    assert report.deleted == [] and report.too_young == [blobs["orphan"]]
    assert len(store.objects.list("blobs/")) == 3


def test_gc_dry_run_deletes_nothing(tmp_path: Path) -> None:
    store, blobs = _gc_store(tmp_path)
    report = collect_garbage(store, grace_seconds=60, dry_run=True, now=time.time() + 3600)
    assert report.deleted == [blobs["orphan"]]
    assert len(store.objects.list("blobs/")) == 3


@pytest.mark.parametrize(
    ("uri", "scheme", "where"),
    [
        ("gs://bucket", "gs", "gs://bucket"),
        ("gs://my.bucket/a/b/", "gs", "gs://my.bucket/a/b"),
        ("file:///srv/store", "file", "file:///srv/store"),
        ("file://localhost/srv/store", "file", "file:///srv/store"),
        ("store", "file", "store"),
        ("../store", "file", "store"),
    ],
)
def test_good_store_uris_are_taken_as_written(
    uri: str, scheme: str, where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mutask.trainer.store.uri import parse_store_uri

    monkeypatch.chdir(tmp_path)
    parsed = parse_store_uri(uri)
    assert parsed.scheme == scheme and parsed.uri.endswith(where)
